//! The simulator, as init's shell, hands out capabilities the way the hosted root task does: a
//! `Hello` names its grants ([`tee_proto::grants`]) and carries in-memory handles for them; the
//! receiving server's side takes them back with the same declaration. A set that does not come
//! back whole, or that hands a server another's capability, fails the seed.

use tee_proto::grants::{ClientGrants, GrantHandles, Grants, TeedGrants};
use tee_proto::lifecycle::{ClientId, InitRequest, ServerKind};
use tee_proto::Frame;

/// What a capability is in the simulator: the wire or object it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimHandle {
    /// The SMC conduit into the secure-world model.
    Conduit,
    /// The shared sparse RAM.
    Ram,
    /// A client's window of RAM (in the simulator, the same sparse RAM).
    Window(ServerKind),
    /// A client incarnation's channel pair with teed.
    TeedChannel(ClientId),
    /// The consumer wires of a client server.
    Consumers(ServerKind),
}

/// The handles travelling with one `Hello`.
pub type HelloHandles = GrantHandles<SimHandle>;

/// Names the grants of `frame` (when it is a `Hello` to `server`) and returns their handles.
pub fn attach(server: ServerKind, frame: &mut Frame<InitRequest>) -> HelloHandles {
    let InitRequest::Hello {
        generation, grants, ..
    } = &mut frame.body
    else {
        return GrantHandles::new();
    };
    let (kinds, handles) = match ClientId::new(server, *generation) {
        None => TeedGrants {
            conduit: SimHandle::Conduit,
            ram: SimHandle::Ram,
            windows: None,
        }
        .into_parts(),
        Some(id) => ClientGrants {
            teed: SimHandle::TeedChannel(id),
            window: SimHandle::Window(server),
            consumers: SimHandle::Consumers(server),
            swtpm: None,
        }
        .into_parts(),
    };
    *grants = kinds;
    handles
}

/// Takes a `Hello`'s grants back as `server` does; the error says what was wrong.
pub fn take(
    server: ServerKind,
    frame: &Frame<InitRequest>,
    handles: HelloHandles,
) -> Result<(), String> {
    let InitRequest::Hello {
        generation, grants, ..
    } = &frame.body
    else {
        return Ok(());
    };
    let refused = |error| format!("{server:?} refused its grants: {error}");
    match ClientId::new(server, *generation) {
        None => {
            let got = TeedGrants::from_parts(grants, handles).map_err(refused)?;
            let want = TeedGrants {
                conduit: SimHandle::Conduit,
                ram: SimHandle::Ram,
                windows: None,
            };
            (got == want)
                .then_some(())
                .ok_or_else(|| format!("teed was granted {got:?}"))
        }
        Some(id) => {
            let got = ClientGrants::from_parts(grants, handles).map_err(refused)?;
            let own = got.teed == SimHandle::TeedChannel(id)
                && got.consumers == SimHandle::Consumers(server)
                && got.window == SimHandle::Window(server);
            own.then_some(())
                .ok_or_else(|| format!("{id} was granted {got:?}"))
        }
    }
}
