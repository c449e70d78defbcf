//! What this process costs, from Linux's `/proc`: CPU time (user plus
//! system) of the whole process or of the calling thread, and resident
//! memory. Scenarios read them before and after a phase. `/proc` rather than
//! `getrusage` keeps herald free of libc bindings; the benchmarks that need
//! these figures run on Linux.

use std::time::Duration;

/// `/proc` reports CPU time in ticks of `USER_HZ`, which Linux fixes at 100
/// on the architectures herald builds for (x86-64, ARM64): a resolution of
/// 10 ms, so a phase measured this way should last seconds.
const USER_HZ: u64 = 100;
/// Fields of `/proc/<pid>/stat` after the command name's closing `)`: the
/// first is field 3 (`state`), so `utime` (14) and `stime` (15) are the
/// 12th and 13th.
const UTIME_AFTER_NAME: usize = 11;

/// CPU time the whole process has used, on every thread.
pub fn process_cpu() -> Result<Duration, String> {
    cpu("/proc/self/stat")
}

/// CPU time the calling thread has used.
pub fn thread_cpu() -> Result<Duration, String> {
    cpu("/proc/thread-self/stat")
}

/// Resident memory around filling an index.
pub struct IndexMemory {
    pub rss_before: u64,
    pub rss_after: u64,
    pub added: usize,
}

impl IndexMemory {
    /// What `fill` (which returns how many entries it added) costs in
    /// resident memory.
    pub fn measure(fill: impl FnOnce() -> Result<usize, String>) -> Result<Self, String> {
        // Read twice: the first reading's own allocation is not the index's.
        let _ = resident_bytes();
        let rss_before = resident_bytes()?;
        let added = fill()?;
        Ok(Self {
            rss_before,
            rss_after: resident_bytes()?,
            added,
        })
    }

    pub fn bytes_per_entry(&self) -> u64 {
        self.rss_after.saturating_sub(self.rss_before) / self.added.max(1) as u64
    }
}

/// Resident memory now (`VmRSS`), in bytes.
pub fn resident_bytes() -> Result<u64, String> {
    status_bytes("VmRSS")
}

/// The most resident memory the process has had (`VmHWM`), in bytes.
pub fn peak_resident_bytes() -> Result<u64, String> {
    status_bytes("VmHWM")
}

fn cpu(path: &str) -> Result<Duration, String> {
    let stat = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    // The name may hold spaces and parentheses; it ends at the last `)`.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| format!("{path}: no command name"))?;
    let mut fields = after_name.split_whitespace().skip(UTIME_AFTER_NAME);
    let mut ticks = |name: &str| {
        fields
            .next()
            .and_then(|f| f.parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no {name}"))
    };
    let total = ticks("utime")? + ticks("stime")?;
    Ok(Duration::from_millis(total * 1_000 / USER_HZ))
}

fn status_bytes(key: &str) -> Result<u64, String> {
    let status = std::fs::read_to_string("/proc/self/status")
        .map_err(|e| format!("/proc/self/status: {e}"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .map(|kib| kib * 1024)
        .ok_or_else(|| format!("/proc/self/status: no {key}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_this_process_figures() {
        // Spin until the kernel has counted this thread's time, however
        // long a loaded machine takes to schedule it; a fixed spin once saw
        // zero ticks.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let mut thread = thread_cpu().unwrap();
        while thread == Duration::ZERO && std::time::Instant::now() < deadline {
            std::hint::black_box(thread_cpu().unwrap());
            thread = thread_cpu().unwrap();
        }
        assert!(thread > Duration::ZERO, "no CPU time counted in 60 s");
        assert!(process_cpu().unwrap() >= thread);
        let rss = resident_bytes().unwrap();
        assert!(rss > 1024 * 1024, "{rss}");
        assert!(peak_resident_bytes().unwrap() >= rss);
    }
}
