//! The executor never sleeps while it has tasks to run.
//!
//! glommio 0.9.0 parked an executor whose scheduling pass was preempted before it ran a task:
//! with nothing else to wake it, it slept in `io_uring_enter` for good. In rampart that was a
//! start-up that never finished (an executor that never ran its first task) and requests
//! answered only at the next ring of the heartbeat rampart had then. third_party/glommio/
//! PATCHES.md has the fix; with no heartbeat now, such a sleep would be a hang for good
//! (tests/tests/wakeups.rs looks for one from outside).
//!
//! A zero preemption timer makes the race certain: the timer's completion is already in the
//! ring when every pass begins. Before the fix this test hung on its first spawned task.

use std::sync::mpsc;
use std::time::Duration;

use glommio::{LocalExecutorBuilder, Placement};

/// Far longer than the test needs (milliseconds), short enough to fail rather than hang CI.
const BOUND: Duration = Duration::from_secs(10);

#[test]
fn an_executor_preempted_before_its_first_task_still_runs_its_tasks() {
    const TASKS: u64 = 200;
    let (done_tx, done_rx) = mpsc::channel();
    let handle = LocalExecutorBuilder::new(Placement::Unbound)
        .name("preempted-at-every-pass")
        .io_memory(64 << 10)
        .preempt_timer(Duration::ZERO)
        .spawn(move || async move {
            let mut sum = 0;
            for i in 0..TASKS {
                // Each task is runnable only once the spawning one waits for it, so each one
                // starts a pass of its own with a preemption already pending.
                sum += glommio::spawn_local(async move { i }).await;
            }
            let _ = done_tx.send(sum);
        })
        .expect("an executor starts");
    match done_rx.recv_timeout(BOUND) {
        Ok(sum) => {
            assert_eq!(sum, TASKS * (TASKS - 1) / 2);
            handle.join().expect("the executor exits cleanly");
        }
        // The executor thread is asleep for good; leave it to the process's exit.
        Err(_) => panic!("the executor slept with runnable tasks for {BOUND:?}"),
    }
}
