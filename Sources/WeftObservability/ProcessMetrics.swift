import CJemalloc
import Foundation
import Prometheus
import Synchronization

#if canImport(Glibc)
import Glibc
#endif

/// The standard process metrics (the names every Prometheus client library
/// exports), read from /proc at scrape time: CPU, memory, file descriptors
/// and start time; plus `weft_build_info`.
public final class ProcessMetrics: Sendable {
    private let cpu: Prometheus.Counter
    private let resident: Prometheus.Gauge
    private let virtual: Prometheus.Gauge
    private let openFDs: Prometheus.Gauge
    private let maxFDs: Prometheus.Gauge
    private let heapAllocated: Prometheus.Gauge
    private let heapResident: Prometheus.Gauge
    private let startTime: Prometheus.Gauge
    private let startTimeSet = Mutex(false)
    /// CPU seconds already added to the counter (it only goes up).
    private let reportedCPU = Mutex(0.0)
    private let ticksPerSecond = Double(sysconf(Int32(_SC_CLK_TCK)))
    private let pageSize = Double(sysconf(Int32(_SC_PAGESIZE)))

    /// Weft's version, shown in `weft_build_info`.
    public static let version = "0.4.0"

    /// The source revision the binary was built from, from `WEFT_REVISION`
    /// (scripts/run.sh sets it from git; packagers set it in the service's
    /// environment), "unknown" without it. SwiftPM has no build-time hook
    /// that could bake it in without a generated source file.
    public static let revision: String = {
        let value = ProcessInfo.processInfo.environment["WEFT_REVISION"]?.trimmingCharacters(in: .whitespaces) ?? ""
        // A label value, not free text: short, printable.
        guard !value.isEmpty, value.count <= 64, value.unicodeScalars.allSatisfy({ $0.isASCII && $0.value > 32 && $0.value < 127 })
        else { return "unknown" }
        return value
    }()

    public init(metrics: WeftMetrics) {
        cpu = metrics.counter("process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.")
        resident = metrics.gauge("process_resident_memory_bytes", help: "Resident memory size in bytes.")
        virtual = metrics.gauge("process_virtual_memory_bytes", help: "Virtual memory size in bytes.")
        openFDs = metrics.gauge("process_open_fds", help: "Number of open file descriptors.")
        maxFDs = metrics.gauge("process_max_fds", help: "Maximum number of open file descriptors.")
        heapAllocated = metrics.gauge(
            "weft_heap_allocated_bytes", help: "Bytes the allocator (jemalloc) has handed out and not yet had back.")
        heapResident = metrics.gauge(
            "weft_heap_resident_bytes",
            help: "Bytes of physical memory the allocator (jemalloc) holds, in use or cached for reuse.")
        startTime = metrics.gauge(
            "process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.")
        #if swift(>=6.3)
        let swiftVersion = "6.3"
        #else
        let swiftVersion = "6"
        #endif
        metrics.gauge(
            "weft_build_info", help: "Always 1; the labels name the build.",
            labels: [("version", Self.version), ("revision", Self.revision), ("swift", swiftVersion)]
        ).set(to: 1.0)
        update()
    }

    /// Reads /proc/self; call before rendering /metrics.
    public func update() {
        if let stat = try? String(contentsOfFile: "/proc/self/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        {
            // Fields after the command name (which may hold spaces), from
            // field 3 (state): utime is 14, stime 15, starttime 22, vsize 23, rss 24.
            let fields = stat[stat.index(after: close)...].split(separator: " ")
            func field(_ number: Int) -> Double? { fields.count > number - 3 ? Double(fields[number - 3]) : nil }
            if let user = field(14), let system = field(15) {
                let total = (user + system) / ticksPerSecond
                let delta = reportedCPU.withLock { reported -> Double in
                    let delta = max(0, total - reported)
                    reported = max(reported, total)
                    return delta
                }
                if delta > 0 { cpu.increment(by: delta) }
            }
            if let vsize = field(23) { virtual.set(vsize) }
            if let rss = field(24) { resident.set(rss * pageSize) }
            // Once: boot time plus the start tick moves with clock steps
            // (btime is recomputed from the clock), and a start time that
            // jitters would read as restarts (`changes()` of it).
            if !startTimeSet.withLock({ $0 }), let started = field(22), let boot = Self.bootTime() {
                startTime.set(boot + started / ticksPerSecond)
                startTimeSet.withLock { $0 = true }
            }
        }
        if let entries = try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd") {
            openFDs.set(Double(entries.count))
        }
        var limit = rlimit()
        if getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 { maxFDs.set(Double(limit.rlim_cur)) }
        weft_jemalloc_refresh()
        let allocated = weft_jemalloc_stat("stats.allocated")
        let heapResidentBytes = weft_jemalloc_stat("stats.resident")
        if allocated >= 0 { heapAllocated.set(Double(allocated)) }
        if heapResidentBytes >= 0 { heapResident.set(Double(heapResidentBytes)) }
    }

    /// Seconds since the epoch at boot (`btime` in /proc/stat).
    static func bootTime() -> Double? {
        guard let text = try? String(contentsOfFile: "/proc/stat", encoding: .utf8) else { return nil }
        for line in text.split(separator: "\n") where line.hasPrefix("btime ") {
            return Double(line.dropFirst(6).trimmingCharacters(in: .whitespaces))
        }
        return nil
    }
}
