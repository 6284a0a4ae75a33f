//! Hostile normal worlds: arbitrary registers and message bytes never panic the model, and its
//! bookkeeping stays consistent.
#![allow(clippy::unwrap_used)]

mod common;

use optee_abi::mem::PhysMem;
use optee_abi::smc::func;
use proptest::prelude::*;
use secure_world::{Config, SecureWorld};
use tee_test_support::normal_world::NormalWorld;

const FUNCS: [u32; 14] = [
    func::CALLS_UID,
    func::CALLS_REVISION,
    func::GET_OS_UUID,
    func::GET_OS_REVISION,
    func::RETURN_FROM_RPC,
    func::CALL_WITH_ARG,
    func::GET_SHM_CONFIG,
    func::EXCHANGE_CAPABILITIES,
    func::DISABLE_SHM_CACHE,
    func::ENABLE_SHM_CACHE,
    func::GET_THREAD_COUNT,
    func::CALL_WITH_RPC_ARG,
    0x3200_0077,
    0xB200_0055,
];

fn frame() -> impl Strategy<Value = [u64; 8]> {
    let base = Config::default().ram_base;
    (
        0..FUNCS.len(),
        0u64..8,
        prop_oneof![Just(base), Just(base + 4096), any::<u64>()],
        any::<[u64; 5]>(),
    )
        .prop_map(|(f, small, pa, rest)| {
            [
                u64::from(FUNCS[f]),
                pa >> 32,
                pa & 0xFFFF_FFFF,
                small,
                rest[0],
                rest[1],
                rest[2],
                rest[3],
            ]
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_register_frames_never_panic(
        frames in prop::collection::vec(frame(), 1..60),
        page0 in prop::collection::vec(any::<u8>(), 256),
        page1 in prop::collection::vec(any::<u8>(), 256),
    ) {
        let config = Config { foreign_intr_every: Some(2), ..Config::default() };
        let mut nw = NormalWorld::new(&config);
        let base = config.ram_base;
        let mut sw = SecureWorld::new(config, 9);
        nw.ram.write(base, &page0).unwrap();
        nw.ram.write(base + 4096, &page1).unwrap();
        for regs in frames {
            sw.smc(&mut nw.ram, regs);
            prop_assert!(sw.heap().used <= sw.heap().capacity);
            prop_assert!(sw.heap().used >= sw.heap().baseline);
        }
        sw.reset();
        prop_assert_eq!(sw.threads().free(), 2);
        prop_assert_eq!(sw.heap().used, sw.heap().baseline);
    }

    #[test]
    fn arbitrary_messages_complete_and_release_their_threads(
        messages in prop::collection::vec(
            (0u32..9, any::<u32>(), 0u32..7, prop::collection::vec((0u64..0x400, any::<[u64; 3]>()), 0..7)),
            1..20,
        ),
    ) {
        let config = Config::default();
        let mut nw = NormalWorld::new(&config);
        let mut sw = SecureWorld::new(config, 4);
        for (cmd, session, func_id, params) in messages {
            let mut bytes = vec![0u8; 32 + 32 * params.len()];
            bytes[0..4].copy_from_slice(&cmd.to_le_bytes());
            bytes[4..8].copy_from_slice(&func_id.to_le_bytes());
            bytes[8..12].copy_from_slice(&session.to_le_bytes());
            bytes[28..32].copy_from_slice(&(params.len() as u32).to_le_bytes());
            for (i, (attr, words)) in params.iter().enumerate() {
                let at = 32 + 32 * i;
                bytes[at..at + 8].copy_from_slice(&attr.to_le_bytes());
                for (w, word) in words.iter().enumerate() {
                    bytes[at + 8 + 8 * w..at + 16 + 8 * w].copy_from_slice(&word.to_le_bytes());
                }
            }
            let page = nw.alloc_frame();
            nw.ram.write(page, &bytes).unwrap();
            let regs = sw.smc(&mut nw.ram, [u64::from(func::CALL_WITH_ARG), page >> 32, page & 0xFFFF_FFFF, 0, 0, 0, 0, 0]);
            // Every call runs to its end: no waiter can exist with one call at a time.
            let _ = nw.finish(&mut sw, page, regs);
            prop_assert_eq!(sw.threads().free(), 2);
            prop_assert!(sw.heap().used <= sw.heap().capacity);
        }
        // Everything registered or opened can be torn down again.
        let cookies: Vec<u64> = sw.registrations().map(|r| r.cookie).collect();
        for cookie in cookies {
            nw.unregister(&mut sw, cookie).unwrap();
        }
        let sessions: Vec<u32> = sw.sessions().map(|s| s.id).collect();
        for id in sessions {
            nw.close_session(&mut sw, id).unwrap();
        }
        prop_assert_eq!(sw.heap().used, sw.heap().baseline);
    }
}
