// An old-protocol client against Sluice: Go's sarama 1.22 (Debian's
// golang-github-shopify-sarama-dev), configured for Kafka 0.11, so it sends the request
// versions of the Kafka 2.x era, among them OffsetCommit v1 and OffsetFetch v1, which
// Kafka 4 removed (KIP-896).
//
//	sarama-check -bootstrap HOST:PORT -topic T -group G -produce N -expect M
//
// produces N messages, then consumes with a consumer group until M messages arrived,
// committing each one, and prints "consumed M". A second run with the same group reads
// only what was produced after the first run's commits.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/Shopify/sarama"
)

type handler struct {
	mu     sync.Mutex
	seen   map[string]int
	want   int
	done   chan struct{}
	closed bool
}

func (h *handler) Setup(sarama.ConsumerGroupSession) error   { return nil }
func (h *handler) Cleanup(sarama.ConsumerGroupSession) error { return nil }

func (h *handler) ConsumeClaim(sess sarama.ConsumerGroupSession, claim sarama.ConsumerGroupClaim) error {
	for msg := range claim.Messages() {
		sess.MarkMessage(msg, "sarama")
		h.mu.Lock()
		h.seen[string(msg.Value)]++
		if len(h.seen) >= h.want && !h.closed {
			h.closed = true
			close(h.done)
		}
		h.mu.Unlock()
	}
	return nil
}

func main() {
	bootstrap := flag.String("bootstrap", "", "broker address")
	topic := flag.String("topic", "", "topic")
	group := flag.String("group", "", "consumer group")
	produce := flag.Int("produce", 0, "messages to produce first")
	tag := flag.String("tag", "m", "payload prefix of produced messages")
	expect := flag.Int("expect", 0, "distinct messages to consume")
	flag.Parse()

	config := sarama.NewConfig()
	config.Version = sarama.V0_11_0_0
	config.ClientID = "sarama-1.22"
	config.Producer.RequiredAcks = sarama.WaitForAll
	config.Producer.Return.Successes = true
	config.Consumer.Offsets.Initial = sarama.OffsetOldest
	config.Consumer.Offsets.CommitInterval = 100 * time.Millisecond
	config.Consumer.Group.Rebalance.Timeout = 20 * time.Second

	if *produce > 0 {
		p, err := sarama.NewSyncProducer([]string{*bootstrap}, config)
		if err != nil {
			fail("producer: %v", err)
		}
		for i := 0; i < *produce; i++ {
			v := fmt.Sprintf("%s-%d", *tag, i)
			if _, _, err := p.SendMessage(&sarama.ProducerMessage{Topic: *topic, Value: sarama.StringEncoder(v)}); err != nil {
				fail("produce %s: %v", v, err)
			}
		}
		p.Close()
	}

	g, err := sarama.NewConsumerGroup([]string{*bootstrap}, *group, config)
	if err != nil {
		fail("consumer group: %v", err)
	}
	go func() {
		for err := range g.Errors() {
			fmt.Fprintf(os.Stderr, "consumer group error: %v\n", err)
		}
	}()
	h := &handler{seen: map[string]int{}, want: *expect, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	go func() {
		for ctx.Err() == nil {
			if err := g.Consume(ctx, []string{*topic}, h); err != nil {
				fmt.Fprintf(os.Stderr, "consume: %v\n", err)
				time.Sleep(200 * time.Millisecond)
			}
		}
	}()
	select {
	case <-h.done:
	case <-ctx.Done():
		fail("timed out with %d of %d messages", len(h.seen), *expect)
	}
	// Let the offset manager commit the last marks (CommitInterval), then leave.
	time.Sleep(500 * time.Millisecond)
	cancel()
	if err := g.Close(); err != nil {
		fail("close: %v", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for v, n := range h.seen {
		if n > 1 {
			fail("%s read %d times", v, n)
		}
	}
	fmt.Printf("consumed %d\n", len(h.seen))
	for v := range h.seen {
		fmt.Println(v)
	}
}

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}
