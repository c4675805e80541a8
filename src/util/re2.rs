//! Client-supplied regular expressions (ListTransactions v2's transactional-id pattern,
//! KIP-848's subscribed-topic regex). Kafka compiles both with RE2/J and asks for a whole
//! match; the `regex` crate speaks the same RE2 syntax and runs in time linear in the
//! input, so a client's pattern cannot stall a shard, and the automaton it may build is
//! capped so it cannot take the shard's memory either.

/// Largest compiled pattern accepted (bytes of automaton).
const SIZE_LIMIT_BYTES: usize = 1 << 20;

/// `pattern` as a matcher of whole names (Kafka's `matcher(name).matches()`).
pub fn whole_match(pattern: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(SIZE_LIMIT_BYTES)
        .build()
}

#[cfg(test)]
mod tests {
    use super::whole_match;

    #[test]
    fn the_whole_name_must_match_and_bad_patterns_are_errors() {
        let p = whole_match("orders-.*").unwrap();
        assert!(p.is_match("orders-1") && !p.is_match("old-orders-1"));
        let p = whole_match("a|b").unwrap();
        assert!(p.is_match("b") && !p.is_match("ab"));
        assert!(whole_match("(unclosed").is_err());
        // A pattern whose automaton would be huge is refused, not built.
        assert!(whole_match("(\\w{1000}){1000}").is_err());
    }
}
