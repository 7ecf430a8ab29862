//! A child process that cannot outlive its parent. Local mode runs `edge-agent` as a
//! child; killed with SIGKILL, a parent gets no chance to stop it, and every restart
//! added one more agent on the same outbox. Linux's `PR_SET_PDEATHSIG` (prctl(2)) has
//! the kernel send the child a signal when its parent dies; SIGTERM gives the child
//! its clean stop.
//!
//! The kernel watches the *thread* that forked the child: spawn from a thread that
//! lives as long as the process (the main thread; `#[tokio::main]`'s body runs on it),
//! not from a pool thread that may exit when idle.

use std::os::unix::process::CommandExt;

/// Makes `cmd`'s child receive SIGTERM when this process dies, however it dies.
pub fn stop_with_parent(cmd: &mut std::process::Command) {
    let parent = std::process::id();
    // SAFETY: the closure runs between fork and exec, where only async-signal-safe
    // calls are allowed: prctl(2) and getppid(2) are system calls, and the error is
    // made from a raw errno without allocating.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            // The parent may have died before the prctl: then nobody will signal.
            if libc::getppid() as u32 != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::ExitStatusExt;
    use std::time::{Duration, Instant};

    #[test]
    fn the_child_is_stopped_when_the_thread_that_spawned_it_ends() {
        // The kernel's "parent" is the forking thread: a thread that spawns the child
        // and ends plays a parent that dies, without killing the test process.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut cmd = std::process::Command::new("sleep");
            cmd.arg("600");
            stop_with_parent(&mut cmd);
            tx.send(cmd.spawn().unwrap()).unwrap();
        })
        .join()
        .unwrap();
        let mut child = rx.recv().unwrap();
        let end = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > end {
                let _ = child.kill();
                panic!("the child outlived its parent by 10 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert_eq!(status.signal(), Some(libc::SIGTERM));
    }
}
