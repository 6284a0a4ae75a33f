//! What init hands each server with its `Hello`: the one declaration of every grant.
//!
//! A server receives its capabilities only from init, only with `Hello` (hosted: SCM_RIGHTS
//! descriptors beside the frame; in the simulator: in-memory handles). The frame names the
//! kind of every handle it carries, in order ([`InitRequest::Hello`]'s `grants`), so the
//! receiver never guesses from positions. [`TeedGrants`] and [`ClientGrants`] are the typed
//! sets; [`Grants::into_parts`] and [`Grants::from_parts`] are the only code that knows how a
//! set travels, for every platform: init's shells and the simulator encode, the servers'
//! shells decode.
//!
//! [`InitRequest::Hello`]: crate::lifecycle::InitRequest::Hello

use serde::{Deserialize, Serialize};

/// One capability init hands a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Grant {
    /// The SMC conduit to the secure world: teed's alone.
    SmcConduit,
    /// Normal-world RAM (the frames teed allocates from, and the journal).
    Ram,
    /// A client's end of its endpoint to teed.
    TeedEndpoint,
    /// The listener a client serves native-frame consumers on.
    ConsumerListener,
    /// tpmd's swtpm-protocol data listener.
    SwtpmData,
    /// tpmd's swtpm-protocol control listener.
    SwtpmControl,
    /// A client's own window of normal-world RAM: the only RAM it maps.
    ClientWindow,
    /// tpmd's window, for teed (which sees all of normal-world RAM).
    TpmdWindow,
    /// bnxtd's window, for teed.
    BnxtdWindow,
}

impl Grant {
    /// Every kind, in declaration order (the index into a decoder's table).
    pub const ALL: [Grant; 9] = [
        Grant::SmcConduit,
        Grant::Ram,
        Grant::TeedEndpoint,
        Grant::ConsumerListener,
        Grant::SwtpmData,
        Grant::SwtpmControl,
        Grant::ClientWindow,
        Grant::TpmdWindow,
        Grant::BnxtdWindow,
    ];

    fn index(self) -> usize {
        self as usize
    }
}

/// The most handles one `Hello` carries.
pub const MAX_GRANTS: usize = Grant::ALL.len();

/// The kinds a `Hello` carries, in the order of its handles. Fixed-size, so that `Hello`
/// stays a plain `Copy` value; empty slots come last.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GrantKinds([Option<Grant>; MAX_GRANTS]);

impl GrantKinds {
    /// No grants: what a core writes into `Hello`; the shell that attaches the handles fills
    /// it in.
    pub const NONE: GrantKinds = GrantKinds([None; MAX_GRANTS]);

    /// The kinds, in order (a hostile frame's gaps are skipped; the count check catches them).
    pub fn iter(&self) -> impl Iterator<Item = Grant> + '_ {
        self.0.iter().flatten().copied()
    }

    /// How many kinds are named.
    pub fn len(&self) -> usize {
        self.iter().count()
    }

    /// True when no kind is named.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends `kind`; false when the list is full.
    fn push(&mut self, kind: Grant) -> bool {
        match self.0.iter_mut().find(|slot| slot.is_none()) {
            Some(slot) => {
                *slot = Some(kind);
                true
            }
            None => false,
        }
    }
}

impl FromIterator<Grant> for GrantKinds {
    /// Kinds beyond [`MAX_GRANTS`] are dropped.
    fn from_iter<I: IntoIterator<Item = Grant>>(kinds: I) -> Self {
        let mut list = GrantKinds::NONE;
        for kind in kinds {
            list.push(kind);
        }
        list
    }
}

/// The handles of a grant set, in the order of its [`GrantKinds`].
pub type GrantHandles<H> = heapless::Vec<H, MAX_GRANTS>;

/// Why a `Hello`'s handles do not make the set a server needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum GrantError {
    /// The frame names more or fewer handles than came with it.
    #[error("Hello names {declared} grants but {attached} handles came with it")]
    CountMismatch { declared: usize, attached: usize },
    /// A grant the server cannot serve without is not there.
    #[error("Hello lacks the {0:?} grant")]
    Missing(Grant),
    /// A grant this kind of server is never given (a client offered the conduit, say).
    #[error("Hello carries a {0:?} grant this server must not hold")]
    Unexpected(Grant),
    /// The same kind twice.
    #[error("Hello carries the {0:?} grant twice")]
    Duplicate(Grant),
    /// One swtpm listener without the other.
    #[error("Hello carries one swtpm listener without the other")]
    HalfSwtpm,
    /// One client's window without the other's.
    #[error("Hello carries one client window without the other")]
    HalfWindows,
}

/// A typed set of grants and how it travels.
pub trait Grants<H>: Sized {
    /// The kinds and the handles, in one order, for a `Hello`.
    fn into_parts(self) -> (GrantKinds, GrantHandles<H>);
    /// The set back from a `Hello`'s kinds and handles. Handles of a refused set are dropped
    /// (hosted: closed).
    fn from_parts(
        kinds: &GrantKinds,
        handles: impl IntoIterator<Item = H>,
    ) -> Result<Self, GrantError>;
}

/// What teed gets: the conduit to the secure world, normal-world RAM and, where clients have
/// windows of their own, those windows (teed sees all of normal-world RAM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TeedGrants<H> {
    pub conduit: H,
    pub ram: H,
    pub windows: Option<WindowGrants<H>>,
}

/// The clients' windows, as teed maps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowGrants<H> {
    pub tpmd: H,
    pub bnxtd: H,
}

/// The swtpm-protocol listeners (tpmd, when the stack serves unmodified TPM clients).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwtpmGrants<H> {
    pub data: H,
    pub control: H,
}

/// What a client server (tpmd, bnxtd) gets: its endpoint to teed, its window of normal-world
/// RAM (never the rest of it), its consumer listener and, for tpmd, the swtpm listeners.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientGrants<H> {
    pub teed: H,
    pub window: H,
    pub consumers: H,
    pub swtpm: Option<SwtpmGrants<H>>,
}

impl TeedGrants<()> {
    /// The kinds a teed `Hello` names, with or without the clients' windows: what a `Hello`
    /// built without real handles (a test's, the simulator's) declares.
    pub fn kinds(windows: bool) -> GrantKinds {
        let windows = windows.then_some(WindowGrants {
            tpmd: (),
            bnxtd: (),
        });
        TeedGrants {
            conduit: (),
            ram: (),
            windows,
        }
        .into_parts()
        .0
    }
}

impl ClientGrants<()> {
    /// The kinds a client `Hello` names, with or without the swtpm listeners.
    pub fn kinds(swtpm: bool) -> GrantKinds {
        let swtpm = swtpm.then_some(SwtpmGrants {
            data: (),
            control: (),
        });
        ClientGrants {
            teed: (),
            window: (),
            consumers: (),
            swtpm,
        }
        .into_parts()
        .0
    }
}

/// The handles of a `Hello`, sorted by kind.
struct Table<H>([Option<H>; MAX_GRANTS]);

impl<H> Table<H> {
    fn sort(kinds: &GrantKinds, handles: impl IntoIterator<Item = H>) -> Result<Self, GrantError> {
        let mut handles = handles.into_iter();
        let mut table = Table([None, None, None, None, None, None, None, None, None]);
        let mut attached = 0;
        for kind in kinds.iter() {
            let Some(handle) = handles.next() else {
                return Err(GrantError::CountMismatch {
                    declared: kinds.len(),
                    attached,
                });
            };
            attached += 1;
            let slot = &mut table.0[kind.index()];
            if slot.is_some() {
                return Err(GrantError::Duplicate(kind));
            }
            *slot = Some(handle);
        }
        let extra = handles.count();
        if extra > 0 {
            return Err(GrantError::CountMismatch {
                declared: kinds.len(),
                attached: attached + extra,
            });
        }
        Ok(table)
    }

    fn take(&mut self, kind: Grant) -> Option<H> {
        self.0[kind.index()].take()
    }

    fn require(&mut self, kind: Grant) -> Result<H, GrantError> {
        self.take(kind).ok_or(GrantError::Missing(kind))
    }

    /// Refuses the set when anything is left over.
    fn finish(self) -> Result<(), GrantError> {
        match Grant::ALL.iter().zip(&self.0).find(|(_, h)| h.is_some()) {
            Some((kind, _)) => Err(GrantError::Unexpected(*kind)),
            None => Ok(()),
        }
    }
}

/// Builds the parts from (kind, handle) pairs; a set never holds more than [`MAX_GRANTS`].
fn parts<H>(pairs: impl IntoIterator<Item = (Grant, H)>) -> (GrantKinds, GrantHandles<H>) {
    let mut kinds = GrantKinds::NONE;
    let mut handles = GrantHandles::new();
    for (kind, handle) in pairs {
        // Cannot overflow: each kind appears at most once and there are MAX_GRANTS kinds.
        if kinds.push(kind) {
            let _ = handles.push(handle);
        }
    }
    (kinds, handles)
}

impl<H> Grants<H> for TeedGrants<H> {
    fn into_parts(self) -> (GrantKinds, GrantHandles<H>) {
        let windows = self
            .windows
            .map(|w| [(Grant::TpmdWindow, w.tpmd), (Grant::BnxtdWindow, w.bnxtd)]);
        parts(
            [(Grant::SmcConduit, self.conduit), (Grant::Ram, self.ram)]
                .into_iter()
                .chain(windows.into_iter().flatten()),
        )
    }

    fn from_parts(
        kinds: &GrantKinds,
        handles: impl IntoIterator<Item = H>,
    ) -> Result<Self, GrantError> {
        let mut table = Table::sort(kinds, handles)?;
        let conduit = table.require(Grant::SmcConduit)?;
        let ram = table.require(Grant::Ram)?;
        let windows = match (
            table.take(Grant::TpmdWindow),
            table.take(Grant::BnxtdWindow),
        ) {
            (Some(tpmd), Some(bnxtd)) => Some(WindowGrants { tpmd, bnxtd }),
            (None, None) => None,
            _ => return Err(GrantError::HalfWindows),
        };
        let grants = TeedGrants {
            conduit,
            ram,
            windows,
        };
        table.finish()?;
        Ok(grants)
    }
}

impl<H> Grants<H> for ClientGrants<H> {
    fn into_parts(self) -> (GrantKinds, GrantHandles<H>) {
        let swtpm = self
            .swtpm
            .map(|s| [(Grant::SwtpmData, s.data), (Grant::SwtpmControl, s.control)]);
        parts(
            [
                (Grant::TeedEndpoint, self.teed),
                (Grant::ClientWindow, self.window),
                (Grant::ConsumerListener, self.consumers),
            ]
            .into_iter()
            .chain(swtpm.into_iter().flatten()),
        )
    }

    fn from_parts(
        kinds: &GrantKinds,
        handles: impl IntoIterator<Item = H>,
    ) -> Result<Self, GrantError> {
        let mut table = Table::sort(kinds, handles)?;
        let teed = table.require(Grant::TeedEndpoint)?;
        let window = table.require(Grant::ClientWindow)?;
        let consumers = table.require(Grant::ConsumerListener)?;
        let swtpm = match (
            table.take(Grant::SwtpmData),
            table.take(Grant::SwtpmControl),
        ) {
            (Some(data), Some(control)) => Some(SwtpmGrants { data, control }),
            (None, None) => None,
            _ => return Err(GrantError::HalfSwtpm),
        };
        table.finish()?;
        Ok(ClientGrants {
            teed,
            window,
            consumers,
            swtpm,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_set_survives_the_trip_in_any_order() {
        let sent = ClientGrants {
            teed: 1,
            window: 2,
            consumers: 3,
            swtpm: Some(SwtpmGrants {
                data: 4,
                control: 5,
            }),
        };
        let (kinds, handles) = sent.clone().into_parts();
        assert_eq!(ClientGrants::from_parts(&kinds, handles.clone()), Ok(sent));
        // The kinds name the handles, so another order means the same set.
        let mut pairs: heapless::Vec<(Grant, i32), 6> = kinds.iter().zip(handles).collect();
        pairs.reverse();
        let kinds: GrantKinds = pairs.iter().map(|(kind, _)| *kind).collect();
        let handles = pairs.iter().map(|(_, handle)| *handle);
        let back = ClientGrants::from_parts(&kinds, handles).unwrap();
        assert_eq!((back.teed, back.window, back.consumers), (1, 2, 3));

        let plain = TeedGrants {
            conduit: 7,
            ram: 8,
            windows: None,
        };
        let (kinds, handles) = plain.clone().into_parts();
        assert!(kinds.iter().eq([Grant::SmcConduit, Grant::Ram]));
        assert_eq!(TeedGrants::from_parts(&kinds, handles), Ok(plain));
        let windowed = TeedGrants {
            conduit: 7,
            ram: 8,
            windows: Some(WindowGrants { tpmd: 9, bnxtd: 10 }),
        };
        let (kinds, handles) = windowed.clone().into_parts();
        assert_eq!(TeedGrants::from_parts(&kinds, handles), Ok(windowed));
    }

    #[test]
    fn a_wrong_set_is_refused_by_name() {
        use Grant::*;
        let teed = |kinds: &[Grant], n: usize| {
            TeedGrants::<u8>::from_parts(&kinds.iter().copied().collect(), 0..n as u8)
        };
        let client = |kinds: &[Grant]| {
            ClientGrants::<u8>::from_parts(&kinds.iter().copied().collect(), 0..kinds.len() as u8)
        };
        assert_eq!(teed(&[SmcConduit], 1), Err(GrantError::Missing(Ram)));
        assert_eq!(
            teed(&[SmcConduit, Ram], 3),
            Err(GrantError::CountMismatch {
                declared: 2,
                attached: 3
            })
        );
        assert_eq!(
            teed(&[SmcConduit, Ram], 1),
            Err(GrantError::CountMismatch {
                declared: 2,
                attached: 1
            })
        );
        assert_eq!(
            teed(&[SmcConduit, SmcConduit], 2),
            Err(GrantError::Duplicate(SmcConduit))
        );
        // A client is never given the conduit or the whole RAM, and teed never a listener.
        assert_eq!(
            client(&[TeedEndpoint, ClientWindow, ConsumerListener, SmcConduit]),
            Err(GrantError::Unexpected(SmcConduit))
        );
        assert_eq!(
            client(&[TeedEndpoint, ClientWindow, ConsumerListener, Ram]),
            Err(GrantError::Unexpected(Ram))
        );
        assert_eq!(
            teed(&[SmcConduit, Ram, TpmdWindow], 3),
            Err(GrantError::HalfWindows)
        );
        assert_eq!(
            teed(&[SmcConduit, Ram, ConsumerListener], 3),
            Err(GrantError::Unexpected(ConsumerListener))
        );
        assert_eq!(
            client(&[TeedEndpoint, ClientWindow, ConsumerListener, SwtpmData]),
            Err(GrantError::HalfSwtpm)
        );
        assert_eq!(
            client(&[TeedEndpoint, ClientWindow]),
            Err(GrantError::Missing(ConsumerListener))
        );
    }
}
