//! The `SchemeSync` implementation every teesys daemon registers: it turns redox-scheme's calls
//! into [`SchemeAdapter`] calls, `CallerCtx` into [`Caller`], and [`crate::SchemeError`] into
//! errno. Nothing else: every decision is the adapter's.

use redox_scheme::scheme::SchemeSync;
use redox_scheme::{CallerCtx, OpenResult};
use syscall::error::{Error, Result, EBADF};
use syscall::flag::{EventFlags, MapFlags};
use syscall::schemev2::NewFdFlags;

use crate::adapter::SchemeAdapter;
use crate::caller::Caller;
use crate::error::SchemeError;
use crate::handles::ROOT;

/// An adapter as redox-scheme sees it.
pub struct Shim<'a, A> {
    adapter: &'a mut A,
}

impl<'a, A: SchemeAdapter> Shim<'a, A> {
    pub fn new(adapter: &'a mut A) -> Shim<'a, A> {
        Shim { adapter }
    }
}

fn caller(ctx: &CallerCtx) -> Caller {
    Caller {
        pid: ctx.pid,
        uid: ctx.uid,
        gid: ctx.gid,
    }
}

fn errno(error: SchemeError) -> Error {
    Error::new(error.errno())
}

impl<A: SchemeAdapter> SchemeSync for Shim<'_, A> {
    fn scheme_root(&mut self) -> Result<usize> {
        Ok(ROOT)
    }

    fn openat(
        &mut self,
        dirfd: usize,
        path: &str,
        _flags: usize,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<OpenResult> {
        // Paths are opened from the scheme root only: no handle is a directory.
        if dirfd != ROOT {
            return Err(Error::new(EBADF));
        }
        let number = self.adapter.open(path, &caller(ctx)).map_err(errno)?;
        Ok(OpenResult::ThisScheme {
            number,
            flags: NewFdFlags::empty(),
        })
    }

    fn read(
        &mut self,
        id: usize,
        buf: &mut [u8],
        _offset: u64,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.adapter.read(id, buf, &caller(ctx)).map_err(errno)
    }

    fn write(
        &mut self,
        id: usize,
        buf: &[u8],
        _offset: u64,
        _fcntl_flags: u32,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.adapter.write(id, buf, &caller(ctx)).map_err(errno)
    }

    /// `metadata[0]`, when not 0, is the request's length in `payload` (the rest is room for
    /// the answer); 0 or no metadata: the request is the whole payload.
    fn call(
        &mut self,
        id: usize,
        payload: &mut [u8],
        metadata: &[u64],
        ctx: &CallerCtx,
    ) -> Result<usize> {
        let request_len = match metadata.first().copied() {
            None | Some(0) => payload.len(),
            Some(len) => usize::try_from(len).unwrap_or(usize::MAX),
        };
        self.adapter
            .call(id, payload, request_len, &caller(ctx))
            .map_err(errno)
    }

    fn fevent(&mut self, id: usize, _flags: EventFlags, ctx: &CallerCtx) -> Result<EventFlags> {
        let ready = self.adapter.ready(id, &caller(ctx)).map_err(errno)?;
        let mut flags = EventFlags::empty();
        flags.set(EventFlags::EVENT_READ, ready.read);
        flags.set(EventFlags::EVENT_WRITE, ready.write);
        Ok(flags)
    }

    fn mmap_prep(
        &mut self,
        id: usize,
        offset: u64,
        size: usize,
        _flags: MapFlags,
        ctx: &CallerCtx,
    ) -> Result<usize> {
        self.adapter
            .mmap_prep(id, offset, size, &caller(ctx))
            .map_err(errno)
    }

    fn on_close(&mut self, id: usize) {
        self.adapter.close(id);
    }
}
