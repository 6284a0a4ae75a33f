//! The client endpoints init connected: one per client incarnation, named by a [`ClientId`]
//! that reads as `kind * 1_000_000 + generation` (tpmd generation 3 is client 1000003).

use std::collections::BTreeMap;

use tee_proto::lifecycle::ServerKind;
use tee_proto::Generation;
use tee_rt::endpoint::Endpoint;
use tee_rt::event::{Interest, PollSet, Token};
use teed::ClientId;

/// Tokens at and above this name client endpoints.
const CLIENT_TOKENS: u64 = 1 << 32;

/// Room for generations in a client id.
const GENERATIONS_PER_KIND: u32 = 1_000_000;

/// The id of incarnation `generation` of client `kind`; `None` for teed itself or a
/// generation too large to name.
pub fn client_id(kind: ServerKind, generation: Generation) -> Option<ClientId> {
    let kind_number = match kind {
        ServerKind::Teed => return None,
        ServerKind::Tpmd => 1,
        ServerKind::Bnxtd => 2,
    };
    if generation >= GENERATIONS_PER_KIND {
        return None;
    }
    Some(kind_number * GENERATIONS_PER_KIND + generation)
}

/// The connected client endpoints.
#[derive(Debug, Default)]
pub struct ClientEndpoints {
    endpoints: BTreeMap<ClientId, Endpoint>,
}

impl ClientEndpoints {
    /// Adds the endpoint of `client`; a previous endpoint of the same incarnation is returned
    /// (and should be dropped).
    pub fn insert(&mut self, client: ClientId, endpoint: Endpoint) -> Option<Endpoint> {
        self.endpoints.insert(client, endpoint)
    }

    pub fn get(&self, client: ClientId) -> Option<&Endpoint> {
        self.endpoints.get(&client)
    }

    pub fn remove(&mut self, client: ClientId) -> Option<Endpoint> {
        self.endpoints.remove(&client)
    }

    pub fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        for (client, endpoint) in &self.endpoints {
            set.register(
                endpoint.as_fd(),
                Token(CLIENT_TOKENS + u64::from(*client)),
                Interest::READABLE,
            );
        }
    }

    /// The client a poll token names, if it names one.
    pub fn classify(token: Token) -> Option<ClientId> {
        token
            .0
            .checked_sub(CLIENT_TOKENS)
            .and_then(|id| ClientId::try_from(id).ok())
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn ids_keep_kind_and_generation_apart() {
        assert_eq!(client_id(ServerKind::Tpmd, 3), Some(1_000_003));
        assert_eq!(client_id(ServerKind::Bnxtd, 3), Some(2_000_003));
        assert_eq!(client_id(ServerKind::Teed, 1), None);
        assert_eq!(client_id(ServerKind::Tpmd, 999_999), Some(1_999_999));
        assert_eq!(client_id(ServerKind::Tpmd, 1_000_000), None);
    }

    #[test]
    fn tokens_map_back_to_their_client() {
        let mut clients = ClientEndpoints::default();
        let (ours, _theirs) = Endpoint::pair().unwrap();
        assert!(clients.insert(2_000_001, ours).is_none());
        let mut set = PollSet::new();
        clients.register(&mut set);
        assert_eq!(set.len(), 1);
        assert_eq!(
            ClientEndpoints::classify(Token(CLIENT_TOKENS + 2_000_001)),
            Some(2_000_001)
        );
        assert_eq!(ClientEndpoints::classify(Token(0)), None);
        assert!(clients.remove(2_000_001).is_some());
        assert_eq!(clients.len(), 0);
    }
}
