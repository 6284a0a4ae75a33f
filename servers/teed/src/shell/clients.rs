//! The client endpoints init connected: one per client incarnation, named by its
//! [`ClientId`], each polled under a token of its own.

use std::collections::BTreeMap;

use tee_proto::lifecycle::ClientId;
use tee_rt::endpoint::Endpoint;
use tee_rt::event::{Interest, PollSet, Token};

/// Tokens at and above this name client endpoints (below is the serve loop's).
const FIRST_CLIENT_TOKEN: u64 = 1 << 32;

/// The connected client endpoints.
#[derive(Debug)]
pub struct ClientEndpoints {
    endpoints: BTreeMap<ClientId, (Token, Endpoint)>,
    next_token: u64,
}

impl Default for ClientEndpoints {
    fn default() -> Self {
        ClientEndpoints {
            endpoints: BTreeMap::new(),
            next_token: FIRST_CLIENT_TOKEN,
        }
    }
}

impl ClientEndpoints {
    /// Adds the endpoint of `client`; true when it replaced an endpoint of the same
    /// incarnation (which is closed).
    pub fn insert(&mut self, client: ClientId, endpoint: Endpoint) -> bool {
        let token = Token(self.next_token);
        self.next_token += 1;
        self.endpoints.insert(client, (token, endpoint)).is_some()
    }

    pub fn get(&self, client: ClientId) -> Option<&Endpoint> {
        self.endpoints.get(&client).map(|(_, endpoint)| endpoint)
    }

    pub fn remove(&mut self, client: ClientId) -> Option<Endpoint> {
        self.endpoints.remove(&client).map(|(_, endpoint)| endpoint)
    }

    pub fn register<'a>(&'a self, set: &mut PollSet<'a>) {
        for (token, endpoint) in self.endpoints.values() {
            set.register(endpoint.as_fd(), *token, Interest::READABLE);
        }
    }

    /// The client a poll token names, if it names one.
    pub fn classify(&self, token: Token) -> Option<ClientId> {
        self.endpoints
            .iter()
            .find(|(_, (ours, _))| *ours == token)
            .map(|(client, _)| *client)
    }

    pub fn len(&self) -> usize {
        self.endpoints.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use tee_proto::lifecycle::ServerKind;

    #[test]
    fn tokens_map_back_to_their_client() {
        let mut clients = ClientEndpoints::default();
        let (ours, _theirs) = Endpoint::pair().unwrap();
        let bnxtd = ClientId::new(ServerKind::Bnxtd, 1).unwrap();
        assert!(!clients.insert(bnxtd, ours));
        let mut set = PollSet::new();
        clients.register(&mut set);
        assert_eq!(set.len(), 1);
        assert_eq!(clients.classify(Token(FIRST_CLIENT_TOKEN)), Some(bnxtd));
        assert_eq!(clients.classify(Token(0)), None);
        // A second endpoint of the same incarnation replaces the first, under a new token.
        let (again, _theirs) = Endpoint::pair().unwrap();
        assert!(clients.insert(bnxtd, again));
        assert_eq!(clients.classify(Token(FIRST_CLIENT_TOKEN)), None);
        assert_eq!(clients.classify(Token(FIRST_CLIENT_TOKEN + 1)), Some(bnxtd));
        assert!(clients.remove(bnxtd).is_some());
        assert_eq!(clients.len(), 0);
    }
}
