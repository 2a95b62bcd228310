//! Not API: an entry point into the relay's private server-to-client path for the criterion
//! bench `benches/relay.rs` (response relay per message). Nothing in pgsplit calls it.

use bytes::{Bytes, BytesMut};
use pgsplit_backend::StatementCache;
use pgsplit_wire::{Frame, WireError};

use crate::extended::{ClientStatements, rewrite_client};
use crate::outbox::Outbox;
use crate::relay::{RelayState, from_server};

/// The state one client's relay keeps, driven by hand: requests are recorded as the client
/// path records them, responses go through the same `from_server` the relay loop calls after
/// each read from the server.
#[derive(Debug)]
pub struct RelayBench {
    state: RelayState,
    cache: StatementCache,
    to_client: Outbox,
    to_server: Vec<Bytes>,
    max_message: usize,
}

impl Default for RelayBench {
    fn default() -> Self {
        RelayBench {
            state: RelayState::new(ClientStatements::new(Default::default())),
            cache: StatementCache::default(),
            to_client: Outbox::default(),
            to_server: Vec::new(),
            max_message: 256 * 1024 * 1024,
        }
    }
}

impl RelayBench {
    /// A relay state as a new session has it, with the default 256 MiB message limit.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records the client message `request` as sent `times` times (pipelined), so that as many
    /// responses are due; what would go to the server is dropped.
    pub fn expect(&mut self, request: &Frame, times: usize) -> Result<(), WireError> {
        for _ in 0..times {
            rewrite_client(
                request.clone(),
                &mut self.state.statements,
                &mut self.cache,
                &mut self.state.plan,
                &mut self.to_server,
            )?;
            self.to_server.clear();
        }
        Ok(())
    }

    /// One read's worth of server bytes through the relay's server path: every complete
    /// message of `buf` is taken off it and queued for the client. Returns the bytes queued
    /// for the client so far.
    pub fn from_server(&mut self, buf: &mut BytesMut) -> Result<usize, WireError> {
        from_server(
            buf,
            self.max_message,
            &mut self.state,
            &mut self.cache,
            &mut self.to_client,
        )?;
        Ok(self.to_client.len())
    }

    /// Whether every response recorded with [`RelayBench::expect`] has arrived.
    pub fn settled(&self) -> bool {
        self.state.plan.is_empty()
    }

    /// Drops what is queued for the client (as if written).
    pub fn clear_client(&mut self) {
        self.to_client = Outbox::default();
    }
}

#[cfg(test)]
mod tests {
    use super::RelayBench;
    use bytes::BytesMut;
    use pgsplit_wire::{encode, next_frame};

    #[test]
    fn responses_reach_the_client_and_settle_the_plan() {
        let mut query = BytesMut::new();
        encode::query(&mut query, "SELECT 1");
        let query = next_frame(&mut query, 1 << 20).unwrap().unwrap();
        let mut response = BytesMut::new();
        encode::row_description(&mut response, &[("?column?", 23)]);
        encode::data_row(&mut response, &[Some(b"1")]);
        encode::command_complete(&mut response, "SELECT 1");
        encode::ready_for_query(&mut response, b'I');
        let mut bench = RelayBench::new();
        bench.expect(&query, 2).unwrap();
        let mut buf = response.clone();
        assert_eq!(bench.from_server(&mut buf).unwrap(), response.len());
        assert!(buf.is_empty() && !bench.settled());
        let mut buf = response.clone();
        assert_eq!(bench.from_server(&mut buf).unwrap(), 2 * response.len());
        assert!(bench.settled());
        bench.clear_client();
        let mut empty = BytesMut::new();
        assert_eq!(bench.from_server(&mut empty).unwrap(), 0);
    }
}
