//! Property: whatever registers the secure world answers with — random frames, RPCs with
//! random commands in buffers teed gave it, silence, a conduit lost midway — teed never
//! panics, answers every client request within the call deadline, every Status at once, the
//! probe within its deadline and the shutdown within its own, and ends stopped or declined.
//! The scenario is `tee_sim::hostile::run`; the `teed_hostile_sw` fuzz target runs it too.
#![allow(clippy::unwrap_used)]

use optee_abi::smc::Regs;
use proptest::prelude::*;
use tee_sim::hostile::{run, Answer, Case, STEP_BOUND};

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![
        4 => 0u64..8,
        4 => (0u64..8).prop_map(|f| 0xFFFF_0000 + f),
        1 => Just(0xFFFF_FFFF),
        2 => any::<u64>(),
    ]
}

fn register() -> impl Strategy<Value = u64> {
    prop_oneof![
        3 => 0u64..0x1_0000,
        1 => (0u64..0x1000).prop_map(|page| 0x4000_0000 + page * 4096),
        2 => any::<u64>(),
    ]
}

/// Mostly the commands teed serves (GET_TIME .. SHM_FREE), sometimes any.
fn rpc_command() -> impl Strategy<Value = u32> {
    prop_oneof![4 => 3u32..8, 1 => any::<u32>()]
}

/// A value param: plausible, or near the top of u64 where sums overflow.
fn register_or_huge() -> impl Strategy<Value = u64> {
    prop_oneof![2 => register(), 1 => (0u64..1 << 20).prop_map(|d| u64::MAX - d)]
}

fn frame() -> impl Strategy<Value = Regs> {
    (word(), proptest::array::uniform7(register())).prop_map(|(a0, rest)| {
        let mut regs = [a0; 8];
        regs[1..].copy_from_slice(&rest);
        regs
    })
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        2 => Just(Answer::Honest),
        6 => frame().prop_map(Answer::Frame),
        1 => Just(Answer::Silent),
        2 => (rpc_command(), register_or_huge(), register_or_huge())
            .prop_map(|(cmd, a, b)| Answer::CmdInGiven { cmd, a, b }),
    ]
}

fn case() -> impl Strategy<Value = Case> {
    (
        any::<bool>(),
        proptest::collection::vec(answer(), 1..48),
        proptest::option::of(0usize..64),
    )
        .prop_map(|(honest_probe, answers, conduit_fails_after)| Case {
            honest_probe,
            answers,
            conduit_fails_after,
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_secure_world_answers_never_panic_hang_or_wedge_teed(case in case()) {
        if let Err(violation) = run(&case, STEP_BOUND) {
            return Err(TestCaseError::fail(violation.to_string()));
        }
    }
}
