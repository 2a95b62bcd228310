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

/// Bytes queued for one socket.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    chunks: VecDeque<Bytes>,
    len: usize,
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
        let n = {
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            let mut count = 0;
            for (slot, chunk) in slices.iter_mut().zip(self.chunks.iter()) {
                *slot = IoSlice::new(chunk);
                count += 1;
            }
            wr.write_vectored(&slices[..count]).await?
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

    fn advance(&mut self, mut n: usize) {
        self.len -= n;
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
