//! WASI `poll_oneoff` bounded by the session's wall-clock limit.
//!
//! wasmtime-wasi sleeps the host thread for whatever a module asks
//! (`std::thread::sleep` of the guest's timeout), and epoch interruption
//! cannot stop a host call, so a module that sleeps "forever" would hold its
//! slot and thread forever. This replacement serves clock subscriptions (all
//! that `std::thread::sleep` and timers use) sleeping at most until the
//! session's deadline, then traps with [`DeadlineReached`]; fd subscriptions
//! are not supported (tool servers read stdin and write stdout blocking).
//! Sessions on a thread of their own sleep the thread; warm sessions, which
//! run on the caller's task, await a timer.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Linker};

use super::sandbox::StoreData;

/// The trap a sleep past the deadline ends in; classified as a timeout.
#[derive(Debug, thiserror::Error)]
#[error("the wall-clock limit was reached while the module slept")]
pub struct DeadlineReached;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;
const TAG_CLOCK: u8 = 0;
const FLAG_ABSTIME: u16 = 1;
const CLOCK_REALTIME: u32 = 0;
const ERRNO_INVAL: i32 = 28;
const ERRNO_NOTSUP: i32 = 58;

/// How long a clock subscription asks to wait, relative to now.
fn requested_wait(sub: &[u8]) -> Duration {
    let u32_at = |o: usize| u32::from_le_bytes(sub[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(sub[o..o + 8].try_into().expect("8 bytes"));
    let (clock, timeout) = (u32_at(16), u64_at(24));
    let flags = u16::from_le_bytes(sub[40..42].try_into().expect("2 bytes"));
    if flags & FLAG_ABSTIME == 0 {
        return Duration::from_nanos(timeout);
    }
    if clock == CLOCK_REALTIME {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
        return Duration::from_nanos(timeout).saturating_sub(now);
    }
    // An absolute monotonic time on a clock whose origin the guest chose:
    // answer at once (a loop waiting on it is bounded by fuel and epochs).
    Duration::ZERO
}

/// What a `poll_oneoff` asks: the soonest clock subscription, or an errno.
struct Wait {
    userdata: u64,
    wait: Duration,
    events_ptr: i32,
    nevents_ptr: i32,
}

fn memory_of(caller: &mut Caller<'_, StoreData>) -> wasmtime::Result<wasmtime::Memory> {
    caller
        .get_export("memory")
        .and_then(|e| e.into_memory())
        .ok_or_else(|| wasmtime::Error::msg("module exports no memory"))
}

/// Reads the subscriptions: `Err(errno)` for what is not supported.
fn plan(
    caller: &mut Caller<'_, StoreData>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubscriptions: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<Result<Wait, i32>> {
    let memory = memory_of(caller)?;
    // More subscriptions than fit in memory is the guest's error, not a reason to allocate.
    let n = usize::try_from(nsubscriptions).unwrap_or(0);
    if n == 0 || n > memory.data_size(&*caller) / SUBSCRIPTION_SIZE {
        return Ok(Err(ERRNO_INVAL));
    }
    let mut subs = vec![0u8; n * SUBSCRIPTION_SIZE];
    memory.read(&*caller, subs_ptr as u32 as usize, &mut subs)?;
    let mut soonest: Option<(u64, Duration)> = None;
    for sub in subs.chunks_exact(SUBSCRIPTION_SIZE) {
        if sub[8] != TAG_CLOCK {
            return Ok(Err(ERRNO_NOTSUP));
        }
        let userdata = u64::from_le_bytes(sub[0..8].try_into().expect("8 bytes"));
        let wait = requested_wait(sub);
        if soonest.is_none_or(|(_, w)| wait < w) {
            soonest = Some((userdata, wait));
        }
    }
    let (userdata, wait) = soonest.expect("at least one subscription");
    Ok(Ok(Wait { userdata, wait, events_ptr, nevents_ptr }))
}

/// How long to sleep: the wait, cut at the session's deadline (and
/// whether it was cut).
fn bounded(caller: &Caller<'_, StoreData>, wait: Duration) -> (Duration, bool) {
    let left = caller.data().deadline.saturating_duration_since(Instant::now());
    (wait.min(left), wait > left)
}

/// After the sleep: the deadline trap, or the clock event.
fn answer(caller: &mut Caller<'_, StoreData>, w: &Wait, cut: bool) -> wasmtime::Result<i32> {
    if cut {
        return Err(wasmtime::Error::new(DeadlineReached));
    }
    let memory = memory_of(caller)?;
    let mut event = [0u8; EVENT_SIZE];
    event[0..8].copy_from_slice(&w.userdata.to_le_bytes());
    // error 0, type 0 (clock): already zero.
    memory.write(&mut *caller, w.events_ptr as u32 as usize, &event)?;
    memory.write(&mut *caller, w.nevents_ptr as u32 as usize, &1u32.to_le_bytes())?;
    Ok(0)
}

/// For sessions on a thread of their own: the sleep blocks it.
fn poll_oneoff(
    mut caller: Caller<'_, StoreData>,
    subs_ptr: i32,
    events_ptr: i32,
    nsubscriptions: i32,
    nevents_ptr: i32,
) -> wasmtime::Result<i32> {
    let w = match plan(&mut caller, subs_ptr, events_ptr, nsubscriptions, nevents_ptr)? {
        Ok(w) => w,
        Err(errno) => return Ok(errno),
    };
    let (sleep, cut) = bounded(&caller, w.wait);
    std::thread::sleep(sleep);
    answer(&mut caller, &w, cut)
}

/// Replaces wasmtime-wasi's `poll_oneoff` in `linker` (added after it).
pub fn link(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap("wasi_snapshot_preview1", "poll_oneoff", poll_oneoff)?;
    linker.allow_shadowing(false);
    Ok(())
}

/// The same for sessions that run on the caller's task (warm sessions):
/// the sleep is a timer, so it never holds an async worker.
pub fn link_async(linker: &mut Linker<StoreData>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    linker.func_wrap_async(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, StoreData>,
         (subs_ptr, events_ptr, nsubscriptions, nevents_ptr): (i32, i32, i32, i32)| {
            Box::new(async move {
                let w = match plan(&mut caller, subs_ptr, events_ptr, nsubscriptions, nevents_ptr)? {
                    Ok(w) => w,
                    Err(errno) => return Ok(errno),
                };
                let (sleep, cut) = bounded(&caller, w.wait);
                tokio::time::sleep(sleep).await;
                answer(&mut caller, &w, cut)
            })
        },
    )?;
    linker.allow_shadowing(false);
    Ok(())
}
