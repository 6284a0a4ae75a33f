//! TEE Client API result codes, return origins and login methods (`tee_client_api.h`).

pub const SUCCESS: u32 = 0;
pub const ERROR_GENERIC: u32 = 0xFFFF_0000;
pub const ERROR_ACCESS_DENIED: u32 = 0xFFFF_0001;
pub const ERROR_CANCEL: u32 = 0xFFFF_0002;
pub const ERROR_BAD_FORMAT: u32 = 0xFFFF_0005;
pub const ERROR_BAD_PARAMETERS: u32 = 0xFFFF_0006;
pub const ERROR_BAD_STATE: u32 = 0xFFFF_0007;
pub const ERROR_ITEM_NOT_FOUND: u32 = 0xFFFF_0008;
pub const ERROR_NOT_SUPPORTED: u32 = 0xFFFF_000A;
pub const ERROR_OUT_OF_MEMORY: u32 = 0xFFFF_000C;
pub const ERROR_BUSY: u32 = 0xFFFF_000D;
pub const ERROR_COMMUNICATION: u32 = 0xFFFF_000E;
pub const ERROR_SHORT_BUFFER: u32 = 0xFFFF_0010;
pub const ERROR_TARGET_DEAD: u32 = 0xFFFF_3024;
/// `TEE_ERROR_SECURITY` of the GP internal API (tee_api_defines.h): OP-TEE answers it for a
/// memref beyond its registration (core/tee/entry_std.c set_rmem_param) and the client sees it
/// unchanged.
pub const ERROR_SECURITY: u32 = 0xFFFF_000F;

/// Where a result came from (`ret_origin`).
pub mod origin {
    pub const API: u32 = 1;
    pub const COMMS: u32 = 2;
    pub const TEE: u32 = 3;
    pub const TRUSTED_APP: u32 = 4;
}

/// Login methods carried in OPEN_SESSION's second META param.
pub mod login {
    pub const PUBLIC: u32 = 0;
    pub const USER: u32 = 1;
    pub const GROUP: u32 = 2;
    pub const APPLICATION: u32 = 4;
    pub const APPLICATION_USER: u32 = 5;
    pub const APPLICATION_GROUP: u32 = 6;
    /// A kernel client (Linux's in-kernel drivers: tpm_ftpm_tee, tee_bnxt_fw).
    pub const REE_KERNEL: u32 = 0x8000_0000;

    /// Whether OP-TEE accepts this login from the normal world (tee/entry_std.c
    /// get_open_session_meta; TEE_LOGIN_TRUSTED_APP is for TA-to-TA calls only).
    pub const fn is_known(login: u32) -> bool {
        matches!(
            login,
            PUBLIC | USER | GROUP | APPLICATION | APPLICATION_USER | APPLICATION_GROUP | REE_KERNEL
        )
    }

    /// Whether OP-TEE zeroes the client UUID for this login: nobody vouches for an identity
    /// (tee/entry_std.c get_open_session_meta).
    pub const fn is_anonymous(login: u32) -> bool {
        matches!(login, PUBLIC | REE_KERNEL)
    }
}

/// A short name for a result code, for logs and human output.
pub const fn result_name(code: u32) -> &'static str {
    match code {
        SUCCESS => "SUCCESS",
        ERROR_GENERIC => "GENERIC",
        ERROR_ACCESS_DENIED => "ACCESS_DENIED",
        ERROR_CANCEL => "CANCEL",
        ERROR_BAD_FORMAT => "BAD_FORMAT",
        ERROR_BAD_PARAMETERS => "BAD_PARAMETERS",
        ERROR_BAD_STATE => "BAD_STATE",
        ERROR_ITEM_NOT_FOUND => "ITEM_NOT_FOUND",
        ERROR_NOT_SUPPORTED => "NOT_SUPPORTED",
        ERROR_OUT_OF_MEMORY => "OUT_OF_MEMORY",
        ERROR_BUSY => "BUSY",
        ERROR_COMMUNICATION => "COMMUNICATION",
        ERROR_SHORT_BUFFER => "SHORT_BUFFER",
        ERROR_TARGET_DEAD => "TARGET_DEAD",
        ERROR_SECURITY => "SECURITY",
        _ => "UNKNOWN",
    }
}
