//! Fast calls: identification, capabilities, configuration, unknown ids.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::smc::{func, nsec_cap, ret, sec_cap};
use secure_world::Config;
use tee_test_support::normal_world::fast_call;

use common::setup;

#[test]
fn identification_calls_match_optee() {
    let (mut sw, mut nw) = setup();
    let uid = fast_call(&mut sw, &mut nw.ram, func::CALLS_UID, 0);
    assert_eq!(
        uid[..4],
        [0x384f_b3e0, 0xe7f8_11e3, 0xaf63_0002, 0xa5d5_c51b]
    );
    let rev = fast_call(&mut sw, &mut nw.ram, func::CALLS_REVISION, 0);
    assert_eq!(rev[..2], [2, 0]);
    let os = fast_call(&mut sw, &mut nw.ram, func::GET_OS_UUID, 0);
    assert_eq!(
        os[..4],
        [0x4861_78e0, 0xe7f8_11e3, 0xbc5e_0002, 0xa5d5_c51b]
    );
    let os_rev = fast_call(&mut sw, &mut nw.ram, func::GET_OS_REVISION, 0);
    assert_eq!(os_rev[..3], [3, 14, 0]);
    let threads = fast_call(&mut sw, &mut nw.ram, func::GET_THREAD_COUNT, 0);
    assert_eq!(threads[..2], [u64::from(ret::OK), 2]);
}

/// core/arch/arm/tee/entry_fast.c tee_entry_exchange_capabilities as built by 3.14's defaults
/// (CFG_CORE_RESERVED_SHM=y, CFG_CORE_DYN_SHM=y): never UNREGISTERED_SHM.
#[test]
fn capabilities_are_those_3_14_reports() {
    let (mut sw, mut nw) = setup();
    let caps = fast_call(
        &mut sw,
        &mut nw.ram,
        func::EXCHANGE_CAPABILITIES,
        nsec_cap::UNIPROCESSOR,
    );
    assert_eq!(caps[0], u64::from(ret::OK));
    assert_eq!(
        caps[1],
        sec_cap::HAVE_RESERVED_SHM | sec_cap::DYNAMIC_SHM | sec_cap::MEMREF_NULL
    );
    // A normal-world capability OP-TEE does not know is refused.
    let unknown = fast_call(&mut sw, &mut nw.ram, func::EXCHANGE_CAPABILITIES, 1 << 5);
    assert_eq!(unknown[0], u64::from(ret::ENOTAVAIL));
}

#[test]
fn shm_config_is_two_mib_outside_ram() {
    let (mut sw, mut nw) = setup();
    let config = Config::default();
    let shm = fast_call(&mut sw, &mut nw.ram, func::GET_SHM_CONFIG, 0);
    assert_eq!(shm[0], u64::from(ret::OK));
    assert_eq!(shm[2], 2 << 20);
    assert_eq!(shm[3], 1, "cached");
    let (start, end) = (shm[1], shm[1] + shm[2]);
    let ram_end = config.ram_base + config.ram_size;
    assert!(
        end <= config.ram_base || start >= ram_end,
        "static shm overlaps RAM"
    );
}

#[test]
fn unknown_and_hypervisor_calls_are_refused() {
    let (mut sw, mut nw) = setup();
    for id in [0xB200_0099, func::VM_CREATED, func::VM_DESTROYED] {
        let r = fast_call(&mut sw, &mut nw.ram, id, 0);
        assert_eq!(r[0], u64::from(ret::UNKNOWN_FUNCTION), "{id:#x}");
    }
    // Yielding calls this model does not offer reach a thread and are refused there.
    let r = fast_call(&mut sw, &mut nw.ram, func::CALL_WITH_RPC_ARG, 0);
    assert_eq!(r[0], u64::from(ret::EBADCMD));
    // Nothing is suspended: resuming any thread fails.
    for tid in [0u64, 1, 7] {
        let r = sw.smc(
            &mut nw.ram,
            [u64::from(func::RETURN_FROM_RPC), 0, 0, tid, 0, 0, 0, 0],
        );
        assert_eq!(r[0], u64::from(ret::ERESUME));
    }
    assert_eq!(sw.threads().free(), 2);
}

#[test]
fn bad_message_addresses_are_ebadaddr() {
    let (mut sw, mut nw) = setup();
    let config = Config::default();
    let call =
        |sw: &mut secure_world::SecureWorld, ram: &mut secure_world::ram::SparseRam, pa: u64| {
            sw.smc(
                ram,
                [
                    u64::from(func::CALL_WITH_ARG),
                    pa >> 32,
                    pa & 0xFFFF_FFFF,
                    0,
                    0,
                    0,
                    0,
                    0,
                ],
            )[0]
        };
    let ebadaddr = u64::from(ret::EBADADDR);
    // Not page-aligned, outside RAM.
    assert_eq!(call(&mut sw, &mut nw.ram, config.ram_base + 8), ebadaddr);
    assert_eq!(
        call(&mut sw, &mut nw.ram, config.ram_base + config.ram_size),
        ebadaddr
    );
    let reserved = config.reserved_shm.unwrap().base;
    assert_eq!(call(&mut sw, &mut nw.ram, reserved), ebadaddr);
    // num_params over OPTEE_MSG_MAX_NUM_PARAMS (thread_optee_smc.c map_cmd_buffer).
    let page = nw.alloc_frame();
    let mut header = [0u8; 32];
    header[28..32].copy_from_slice(&128u32.to_le_bytes());
    use optee_abi::mem::PhysMem;
    nw.ram.write(page, &header).unwrap();
    assert_eq!(call(&mut sw, &mut nw.ram, page), ebadaddr);
    assert_eq!(sw.threads().free(), 2);
    assert_eq!(sw.heap().used, sw.heap().baseline);
}
