//! The secure world as a process: the register-frame conduit it hands out over its control
//! channel and the shared RAM file, driven from another mapping of the same file.
#![allow(clippy::unwrap_used)]

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, Direction, MsgArg, Param};
use optee_abi::pagelist::write_page_list;
use optee_abi::smc::{func, split_u64, MSG_UID};
use optee_abi::teec;
use tee_rt::conduit::{SmcConduit, UnixConduit};
use tee_rt::ram::DEFAULT_RAM_BASE;
use tee_test_support::hosted::SecureWorldProcess;

const RAM_SIZE: u64 = 64 << 20;

/// A secure-world process started as a launcher starts it, the test playing init.
fn start(tag: &str) -> SecureWorldProcess {
    SecureWorldProcess::start(tag, RAM_SIZE).unwrap()
}

fn conduit(world: &SecureWorldProcess) -> UnixConduit {
    UnixConduit::from_stream(world.connect_conduit().unwrap())
}

fn call_with_arg(conduit: &mut UnixConduit, pa: u64) -> [u64; 8] {
    let (hi, lo) = split_u64(pa);
    conduit
        .call([u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0])
        .unwrap()
}

#[test]
fn serves_fast_calls_and_registers_shm_from_the_ram_file() {
    let world = start("reg");
    let mut conduit = conduit(&world);
    let uid = conduit
        .call([u64::from(func::CALLS_UID), 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!([uid[0], uid[1], uid[2], uid[3]].map(|r| r as u32), MSG_UID);

    let mut ram = world.map_ram().unwrap();
    let (list, data, arg_pa) = (
        DEFAULT_RAM_BASE,
        DEFAULT_RAM_BASE + 0x1000,
        DEFAULT_RAM_BASE + 0x10_0000,
    );
    write_page_list(&mut ram, &[list], &[data, data + 0x1000]).unwrap();
    let mut arg = MsgArg::new(cmd::REGISTER_SHM);
    arg.push(Param::Tmem {
        dir: Direction::Out,
        buf_ptr: list,
        size: 8192,
        shm_ref: 7,
        noncontig: true,
        meta: false,
    })
    .unwrap();
    arg.write_to(&mut ram, arg_pa).unwrap();
    assert_eq!(call_with_arg(&mut conduit, arg_pa)[0], 0);
    assert_eq!(MsgArg::read_from(&ram, arg_pa).unwrap().ret, teec::SUCCESS);

    // A new conduit (for a restarted teed) meets the same secure world: the cookie is still
    // registered, so unregistering it works once and then fails. The old conduit is closed.
    let mut old = conduit;
    let mut conduit = self::conduit(&world);
    assert!(
        old.call([u64::from(func::CALLS_UID), 0, 0, 0, 0, 0, 0, 0])
            .is_err(),
        "the conduit a new one replaced still answers"
    );
    let mut unreg = MsgArg::new(cmd::UNREGISTER_SHM);
    unreg
        .push(Param::Rmem {
            dir: Direction::In,
            offs: 0,
            size: 0,
            shm_ref: 7,
        })
        .unwrap();
    for expected in [teec::SUCCESS, teec::ERROR_BAD_PARAMETERS] {
        unreg.write_to(&mut ram, arg_pa).unwrap();
        assert_eq!(call_with_arg(&mut conduit, arg_pa)[0], 0);
        assert_eq!(MsgArg::read_from(&ram, arg_pa).unwrap().ret, expected);
    }
    // Pages outside the RAM file are refused.
    write_page_list(&mut ram, &[list], &[data]).unwrap();
    ram.write_u64(list, DEFAULT_RAM_BASE + RAM_SIZE).unwrap();
    arg.write_to(&mut ram, arg_pa).unwrap();
    assert_eq!(call_with_arg(&mut conduit, arg_pa)[0], 0);
    assert_eq!(
        MsgArg::read_from(&ram, arg_pa).unwrap().ret,
        teec::ERROR_BAD_PARAMETERS
    );
}

/// The heap size and its calibrated boot-time baseline are options of the binary; a baseline
/// that leaves nothing of the heap is refused at start with a clear error.
#[test]
fn heap_size_and_baseline_are_options_and_a_baseline_filling_the_heap_is_refused() {
    let world = SecureWorldProcess::start_with_args(
        "heap",
        RAM_SIZE,
        &["--heap-bytes", "131072", "--heap-baseline-bytes", "20000"],
    )
    .unwrap();
    let stats = world.stats().unwrap();
    assert_eq!((stats.heap_capacity, stats.heap_used), (131_072, 20_000));

    let refused = SecureWorldProcess::start_with_args(
        "heap-full",
        RAM_SIZE,
        &["--heap-bytes", "65536", "--heap-baseline-bytes", "65536"],
    );
    let Err(error) = refused else {
        panic!("a full heap must not start");
    };
    assert!(error.to_string().contains("exited"), "{error}");
}
