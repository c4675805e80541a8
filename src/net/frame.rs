//! Kafka framing: a 4-byte big-endian size, then that many bytes of request.

use bytes::{Bytes, BytesMut};
use futures::io::{AsyncRead, AsyncReadExt};

/// Why a frame could not be read. Every variant closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    /// The socket failed, or the peer closed it in the middle of a frame.
    #[error("reading frame: {0}")]
    Io(#[from] std::io::Error),
    /// The size prefix is above the configured limit (`--max-request-bytes`).
    #[error("frame of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge {
        /// The announced size.
        size_bytes: i64,
        /// The limit.
        limit_bytes: usize,
    },
    /// The size prefix is too small to hold a request header.
    #[error("frame size {0} is too small for a request header")]
    TooSmall(i32),
}

/// The smallest request: api key, api version, correlation id and a null client id.
pub const REQUEST_SIZE_MIN_BYTES: i32 = 10;

/// Reads one frame. `Ok(None)` means the peer closed the connection between frames.
pub async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    limit_bytes: usize,
) -> Result<Option<Bytes>, FrameError> {
    let mut size_buf = [0u8; 4];
    let mut filled = 0;
    while filled < size_buf.len() {
        let n = reader.read(&mut size_buf[filled..]).await?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(FrameError::Io(std::io::ErrorKind::UnexpectedEof.into()));
        }
        filled += n;
    }
    let size = i32::from_be_bytes(size_buf);
    if size < REQUEST_SIZE_MIN_BYTES {
        return Err(FrameError::TooSmall(size));
    }
    if size as usize > limit_bytes {
        return Err(FrameError::TooLarge {
            size_bytes: i64::from(size),
            limit_bytes,
        });
    }
    let started = std::time::Instant::now();
    let mut body = BytesMut::zeroed(size as usize);
    reader.read_exact(&mut body).await?;
    crate::metrics::record(crate::metrics::Stage::NetworkRead, started.elapsed());
    Ok(Some(body.freeze()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::executor::block_on;

    fn framed(body: &[u8]) -> Vec<u8> {
        let mut v = (body.len() as i32).to_be_bytes().to_vec();
        v.extend_from_slice(body);
        v
    }

    #[test]
    fn reads_consecutive_frames_then_clean_eof() {
        let mut input = framed(&[1; 12]);
        input.extend(framed(&[2; 10]));
        let mut r = futures::io::Cursor::new(input);
        assert_eq!(
            block_on(read_frame(&mut r, 1024)).unwrap().unwrap().len(),
            12
        );
        assert_eq!(block_on(read_frame(&mut r, 1024)).unwrap().unwrap()[0], 2);
        assert!(block_on(read_frame(&mut r, 1024)).unwrap().is_none());
    }

    #[test]
    fn oversized_tiny_and_truncated_frames_are_errors() {
        let mut r = futures::io::Cursor::new(framed(&[0; 100]));
        assert!(matches!(
            block_on(read_frame(&mut r, 50)),
            Err(FrameError::TooLarge { .. })
        ));
        let mut r = futures::io::Cursor::new(framed(&[0; 3]));
        assert!(matches!(
            block_on(read_frame(&mut r, 50)),
            Err(FrameError::TooSmall(3))
        ));
        let mut cut = framed(&[0; 20]);
        cut.truncate(10);
        let mut r = futures::io::Cursor::new(cut);
        assert!(matches!(
            block_on(read_frame(&mut r, 50)),
            Err(FrameError::Io(_))
        ));
        let mut r = futures::io::Cursor::new(vec![0u8, 0]);
        assert!(matches!(
            block_on(read_frame(&mut r, 50)),
            Err(FrameError::Io(_))
        ));
    }
}
