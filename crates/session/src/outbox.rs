//! A queue of byte chunks waiting to be written to a socket, written with vectored writes.
//!
//! Chunks are zero-copy slices of read buffers (`split_to().freeze()`), so relaying a response
//! never copies its bytes.

use std::collections::VecDeque;
use std::io::IoSlice;

use bytes::{Buf, Bytes};
use tokio::io::{AsyncWrite, AsyncWriteExt};

/// Most slices handed to one `write_vectored` call.
const MAX_SLICES: usize = 64;

/// Chunk counts up to this use a small slice array.
const FEW_SLICES: usize = 4;

/// Bytes queued for one socket.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
    /// Bytes written out so far.
    written: u64,
}

impl Outbox {
    /// Queues a chunk.
    pub(crate) fn push(&mut self, chunk: Bytes) {
        if !chunk.is_empty() {
            self.len += chunk.len();
            self.chunks.push_back(chunk);
        }
    }

    /// Queued chunk count.
    #[cfg(test)]
    pub(crate) fn chunks(&self) -> usize {
        self.chunks.len()
    }

    /// Queued byte count.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Drops everything queued, keeping the queue's memory for reuse.
    pub(crate) fn clear(&mut self) {
        self.chunks.clear();
        self.len = 0;
    }

    /// Whether nothing is queued.
    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Writes some queued bytes with one vectored write.
    ///
    /// Cancel safe: a dropped call has written nothing (one `poll_write_vectored` either writes
    /// or returns pending), and the queue advances only after a write returns.
    pub(crate) async fn write_some<W: AsyncWrite + Unpin>(
        &mut self,
        wr: &mut W,
    ) -> std::io::Result<()> {
        // Most writes carry one or two chunks (a unit, an answer): fill only as many slices as
        // there are chunks, from a small array when that is enough.
        let n = match self.chunks.len() {
            0 => return Ok(()),
            1 => wr.write(&self.chunks[0]).await?,
            n if n <= FEW_SLICES => {
                let mut slices = [IoSlice::new(&[]); FEW_SLICES];
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                }
                wr.write_vectored(&slices[..n]).await?
            }
            n => {
                let mut slices = [IoSlice::new(&[]); MAX_SLICES];
                for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                    *slot = IoSlice::new(chunk);
                }
                wr.write_vectored(&slices[..n.min(MAX_SLICES)]).await?
            }
        };
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        self.advance(n);
        Ok(())
    }

    /// Writes everything queued.
    pub(crate) async fn flush<W: AsyncWrite + Unpin>(&mut self, wr: &mut W) -> std::io::Result<()> {
        while !self.is_empty() {
            self.write_some(wr).await?;
        }
        wr.flush().await
    }

    /// Bytes written out so far (queued bytes not yet written do not count).
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
        self.written += n as u64;
        while n > 0 {
            let front = self.chunks.front_mut().expect("advance past queued bytes");
            if front.len() <= n {
                n -= front.len();
                self.chunks.pop_front();
            } else {
                front.advance(n);
                n = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One chunk, a few and many take different paths; a writer that takes at most 5 bytes at
    /// a time splits chunks, and every byte still arrives once, in order.
    #[tokio::test]
    async fn any_chunk_count_and_partial_writes() {
        for count in [1usize, 2, 4, 5, 64, 65, 130] {
            let mut out = Outbox::default();
            let mut expected = Vec::new();
            for i in 0..count {
                let chunk = vec![(i % 251) as u8; i % 9 + 1];
                expected.extend_from_slice(&chunk);
                out.push(Bytes::from(chunk));
            }
            let mut sink = Trickle(Vec::new());
            out.flush(&mut sink).await.unwrap();
            assert_eq!(sink.0, expected, "{count} chunks");
            assert!(out.is_empty());
        }
        let mut out = Outbox::default();
        out.push(Bytes::from_static(b"abc"));
        out.clear();
        assert!(out.is_empty());
        assert_eq!(out.len(), 0);
        out.push(Bytes::from_static(b"de"));
        let mut sink = Vec::new();
        out.flush(&mut sink).await.unwrap();
        assert_eq!(sink, b"de");
    }

    /// A writer that accepts at most 5 bytes per call; a vectored call takes them across
    /// as many slices as they span, as `writev` does.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(5);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let mut left = 5;
            for buf in bufs {
                let n = buf.len().min(left);
                self.0.extend_from_slice(&buf[..n]);
                left -= n;
                if left == 0 {
                    break;
                }
            }
            std::task::Poll::Ready(Ok(5 - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn writes_everything_in_order() {
        let mut out = Outbox::default();
        for i in 0..200u8 {
            out.push(Bytes::from(vec![i; (i as usize % 7) + 1]));
        }
        out.push(Bytes::new());
        let expected: Vec<u8> = (0..200u8)
            .flat_map(|i| std::iter::repeat_n(i, (i as usize % 7) + 1))
            .collect();
        assert_eq!(out.len(), expected.len());
        let mut sink = Vec::new();
        out.flush(&mut sink).await.unwrap();
        assert_eq!(sink, expected);
        assert!(out.is_empty());
    }
}
