//! What `/proc` says about a process: CPU time, resident memory, open
//! descriptors. The load tools (`bench`, `soak`) watch the server or proxy
//! under test with it.

/// Clock ticks per second of `/proc/PID/stat` times: USER_HZ, which is
/// 100 on every Linux architecture this runs on.
pub const TICKS_PER_SEC: f64 = 100.0;

/// utime + stime of a process (every thread, live or gone), in ticks.
pub fn cpu_ticks(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    // The command name (field 2) is in parentheses and may hold spaces;
    // fields are counted after its closing parenthesis.
    let rest = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .ok_or("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state is field 3, utime field 14, stime field 15.
    let field = |n: usize| -> Result<u64, String> {
        fields
            .get(n - 3)
            .and_then(|f| f.parse().ok())
            .ok_or_else(|| format!("{path}: no field {n}"))
    };
    Ok(field(14)? + field(15)?)
}

fn own_ticks() -> Result<u64, String> {
    cpu_ticks(std::process::id())
}

/// CPU times at one instant: the watched processes' and our own.
pub struct CpuSample {
    watched: u64,
    own: u64,
}

/// CPU seconds spent between two samples.
pub struct CpuDelta {
    pub watched_secs: f64,
    pub own_secs: f64,
}

impl CpuSample {
    pub fn take(pids: &[u32]) -> Result<CpuSample, String> {
        let mut watched = 0;
        for &pid in pids {
            watched += cpu_ticks(pid)?;
        }
        Ok(CpuSample {
            watched,
            own: own_ticks()?,
        })
    }

    pub fn since(&self, earlier: &CpuSample) -> CpuDelta {
        CpuDelta {
            watched_secs: self.watched.saturating_sub(earlier.watched) as f64 / TICKS_PER_SEC,
            own_secs: self.own.saturating_sub(earlier.own) as f64 / TICKS_PER_SEC,
        }
    }
}

/// The summed VmRSS of processes, KiB.
pub fn rss_kib(pids: &[u32]) -> Result<u64, String> {
    status_kib(pids, "VmRSS:")
}

/// The summed peak VmRSS of processes since each started (VmHWM), KiB:
/// what a burst (a reconnect storm) needed at its height, which a reading
/// after it misses.
pub fn peak_rss_kib(pids: &[u32]) -> Result<u64, String> {
    status_kib(pids, "VmHWM:")
}

/// A `/proc/PID/status` field in kB (`VmRSS:`), summed over `pids`.
fn status_kib(pids: &[u32], field: &str) -> Result<u64, String> {
    let mut total = 0;
    for &pid in pids {
        let path = format!("/proc/{pid}/status");
        let status = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
        let kib = status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .ok_or_else(|| format!("{path}: no {field}"))?;
        total += kib;
    }
    Ok(total)
}

/// How many descriptors a process has open.
pub fn open_fds(pid: u32) -> Result<u64, String> {
    let path = format!("/proc/{pid}/fd");
    let entries = std::fs::read_dir(&path).map_err(|e| format!("{path}: {e}"))?;
    Ok(entries.count() as u64)
}

/// The watched processes' resident memory before connections opened and
/// while they were open: idle (`--hold`) or busy (at the end of a measured
/// window, buffers in use included).
#[derive(Debug, Clone, Copy)]
pub struct RssChange {
    /// VmRSS before the first connection, KiB.
    pub before_kib: u64,
    /// VmRSS with the connections open, KiB.
    pub after_kib: u64,
}

impl RssChange {
    /// Bytes per connection over `connections` (0 with none).
    pub fn per_connection(&self, connections: usize) -> f64 {
        if connections == 0 {
            return 0.0;
        }
        (self.after_kib as f64 - self.before_kib as f64) * 1024.0 / connections as f64
    }
}
