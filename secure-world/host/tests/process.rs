//! The secure world as a process: the register-frame conduit on a Unix socket and the shared
//! RAM file, driven from another mapping of the same file.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use optee_abi::mem::PhysMem;
use optee_abi::msg::{cmd, Direction, MsgArg, Param};
use optee_abi::pagelist::write_page_list;
use optee_abi::smc::{func, split_u64, MSG_UID};
use optee_abi::teec;
use tee_rt::conduit::{SmcConduit, UnixConduit};
use tee_rt::ram::{RamFile, DEFAULT_RAM_BASE};

struct World {
    child: Child,
    dir: PathBuf,
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const RAM_SIZE: u64 = 64 << 20;

fn start(tag: &str) -> (World, PathBuf, PathBuf) {
    let dir = std::env::temp_dir().join(format!("teesys-sw-{tag}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("smc.sock");
    let ram = dir.join("ram");
    let child = Command::new(env!("CARGO_BIN_EXE_secure-world"))
        .args([
            "--conduit",
            socket.to_str().unwrap(),
            "--ram",
            ram.to_str().unwrap(),
        ])
        .args(["--ram-size", &RAM_SIZE.to_string()])
        .env("RUST_LOG", "warn")
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !socket.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "secure world did not come up"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    (World { child, dir }, socket, ram)
}

fn call_with_arg(conduit: &mut UnixConduit, pa: u64) -> [u64; 8] {
    let (hi, lo) = split_u64(pa);
    conduit
        .call([u64::from(func::CALL_WITH_ARG), hi, lo, 0, 0, 0, 0, 0])
        .unwrap()
}

#[test]
fn serves_fast_calls_and_registers_shm_from_the_ram_file() {
    let (_world, socket, ram_path) = start("reg");
    let mut conduit = UnixConduit::connect(&socket).unwrap();
    let uid = conduit
        .call([u64::from(func::CALLS_UID), 0, 0, 0, 0, 0, 0, 0])
        .unwrap();
    assert_eq!([uid[0], uid[1], uid[2], uid[3]].map(|r| r as u32), MSG_UID);

    let mut ram = RamFile::open_at(&ram_path, DEFAULT_RAM_BASE, RAM_SIZE).unwrap();
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

    // A new connection (a restarted teed) meets the same secure world: the cookie is still
    // registered, so unregistering it works once and then fails.
    drop(conduit);
    let mut conduit = UnixConduit::connect(&socket).unwrap();
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
