import Foundation
import NIOCore
import NIOPosix
import Synchronization

/// How a run is driven, whatever the scenario says (command-line options).
struct RunOptions: Sendable {
    var target: Target
    var threads = 1
    /// Seconds between progress lines (0: none).
    var progressInterval = 1.0
    var metricsToken: String?
    var drainTimeout = 60.0
    var agreementMargin = 0.25
    /// Print the table and progress (false for `--quiet`).
    var verbose = true
}

/// Runs one scenario against the target: setup, load, collection, report.
struct ScenarioRunner {
    let group: any EventLoopGroup
    let options: RunOptions

    func run(_ scenario: Scenario) async throws -> RunReport {
        let run = Self.runId()
        // The last loop serves setup, scrapes, the sink and the external
        // workers; the others generate load, one worker each.
        let loops = Array(group.makeIterator())
        let controlLoop = loops[loops.count - 1]
        let loadLoops = loops.count > 1 ? Array(loops.dropLast()) : loops
        let control = try await RPCClient.connect(options.target, on: controlLoop)
        defer { control.close() }
        let sink = scenario.setup?.httpSink == true ? try await HTTPSink.start(group: controlLoop) : nil
        let setup = try await RunSetup(client: control, run: run).perform(scenario, sinkURL: sink?.url)
        do {
            return try await load(scenario, run: run, setup: setup, control: control, controlLoop: controlLoop, loadLoops: loadLoops, sink: sink)
        } catch {
            // The storm's schedules would fire on after a failed run.
            if !setup.scheduleIds.isEmpty {
                _ = await RunSetup(client: control, run: run).deleteSchedules(setup.scheduleIds, tenants: setup.tenants)
            }
            await sink?.stop()
            throw error
        }
    }

    private func load(
        _ scenario: Scenario, run: String, setup: SetupResult, control: RPCClient, controlLoop: any EventLoop,
        loadLoops: [any EventLoop], sink: HTTPSink?
    ) async throws -> RunReport {
        let plan = try OperationPlan(scenario, setup: setup, target: options.target, run: run)
        let schedule = Self.schedule(scenario, drain: options.drainTimeout)

        // The harness as external workers, one connection per tenant.
        var externalWorkers: ExternalWorkers?
        var workerTask: Task<Void, Never>?
        if let spec = scenario.workers, spec.count > 0 {
            var clients: [RPCClient] = []
            for _ in setup.tenants { clients.append(try await RPCClient.connect(options.target, on: controlLoop, streams: max(100, spec.count))) }
            let workers = ExternalWorkers(clients: clients, tenants: setup.tenants, spec: spec)
            externalWorkers = workers
            workerTask = Task { await workers.run() }
        }

        let watch = ServerWatch(client: control, token: options.metricsToken)
        let before = await watch.scrape()
        let startedAt = Date()

        // One worker per event loop, each with its share of the load.
        let loops = loadLoops
        let workers = loops.enumerated().map { index, loop in
            LoadWorker(
                loop: loop, connector: Connector(target: options.target), plan: plan,
                schedule: schedule.share(index, of: loops.count), index: index, workers: loops.count)
        }
        for worker in workers { try await worker.loop.flatSubmit { worker.connect() }.get() }
        let startAt = NIODeadline.now() + .milliseconds(100)
        let loadStart = Date().addingTimeInterval(0.1)
        let results = workers.map { worker in worker.loop.flatSubmit { worker.run(startAt: startAt) } }

        // Progress lines and server samples, once a second, until the load ends.
        let samples = Mutex<[ServerWatch.Sample]>([])
        // The server is sampled once a second whether or not progress is
        // printed (queue depth, RSS and open files maxima come from these).
        let sampleEvery = options.progressInterval > 0 ? min(1.0, options.progressInterval) : 1.0
        let progressTask: Task<Void, Never>? =
            sampleEvery > 0
            ? Task { [options] in
                var last = ProgressSnapshot()
                var lastTime = Date()
                while !Task.isCancelled {
                    try? await Task.sleep(for: .seconds(sampleEvery))
                    if Task.isCancelled { break }
                    var now = ProgressSnapshot()
                    for worker in workers {
                        if let snapshot = try? await worker.loop.submit({ worker.snapshot() }).get() { now.merge(snapshot) }
                    }
                    let metrics = await watch.scrape()
                    let sample = metrics.map { ServerWatch.sample($0, since: loadStart) }
                    if let sample { samples.withLock { $0.append(sample) } }
                    if options.verbose && options.progressInterval > 0 && Date().timeIntervalSince(lastTime) >= options.progressInterval * 0.99 {
                        let elapsed = Date().timeIntervalSince(lastTime)
                        Self.printProgress(now, last: last, seconds: elapsed, total: Date().timeIntervalSince(loadStart), sample: sample)
                    }
                    if Date().timeIntervalSince(lastTime) >= options.progressInterval * 0.99 {
                        last = now
                        lastTime = Date()
                    }
                }
            } : nil

        var merged = [Recorder](repeating: Recorder(operations: plan.operations.count), count: schedule.phases.count)
        for result in results {
            let recorders = try await result.get()
            for (index, recorder) in recorders.enumerated() { merged[index].merge(recorder) }
        }
        progressTask?.cancel()
        let afterLoad = await watch.scrape()

        // Executions: wait for them all, then read their stored timestamps.
        var executionReport: RunReport.ExecutionReport?
        var scheduleReport: RunReport.ScheduleReport?
        var afterDrain = afterLoad
        if scenario.waitForExecutions == true || scenario.setup?.schedules != nil {
            if let storm = scenario.setup?.schedules {
                // A storm's ticks come on the minute: wait them out.
                let wait = storm.waitSeconds ?? 0
                if wait > 0 { try await Task.sleep(for: .seconds(wait)) }
            }
            let collected = try await ExecutionCollector(client: control).collect(
                workflows: setup.workflowIds, tenants: setup.tenants, warmup: scenario.load.warmup ?? 0,
                drainTimeout: options.drainTimeout)
            afterDrain = await watch.scrape()
            let tasks = Double(Self.tasksPerExecution(scenario))
            executionReport = RunReport.ExecutionReport(
                total: collected.total, byStatus: collected.byStatus, unfinished: collected.unfinished,
                completedPerSecond: collected.completedPerSecond, tasksPerSecond: collected.completedPerSecond * tasks,
                completionRatio: collected.completionRatio, windowSeconds: collected.windowSeconds,
                drainSeconds: collected.drainSeconds, latencyMs: LatencySummary(collected.latency))
            if setup.schedulesCreated > 0 {
                scheduleReport = RunReport.ScheduleReport(
                    schedules: setup.schedulesCreated, createSeconds: setup.scheduleCreateSeconds,
                    executions: Int(collected.scheduleLag.totalCount), fireLagMs: LatencySummary(collected.scheduleLag))
            }
        }
        workerTask?.cancel()
        await workerTask?.value
        for client in externalWorkers?.clients ?? [] { client.close() }
        await sink?.stop()
        if !setup.scheduleIds.isEmpty {
            let failed = await RunSetup(client: control, run: run).deleteSchedules(setup.scheduleIds, tenants: setup.tenants)
            if failed > 0 { Output.say("weft-loadtest: \(failed) of the storm's schedules could not be deleted (named weft-loadtest \(run))") }
        }

        var phases: [RunReport.PhaseReport] = []
        var total = Recorder(operations: plan.operations.count)
        var countedSeconds = 0.0
        for (index, phase) in schedule.phases.enumerated() {
            let rate = schedule.mode == .open ? (phase.rateFrom == phase.rateTo ? phase.rateFrom : nil) : nil
            let report = RunReport.PhaseReport(
                name: phase.name, seconds: phase.seconds, offeredRate: rate,
                concurrency: schedule.mode == .closed ? phase.concurrency : nil, recorder: merged[index],
                operationNames: plan.operations.map(\.name))
            phases.append(report)
            if phase.counted {
                total.merge(merged[index])
                countedSeconds += phase.seconds
            }
        }
        let totalRate = phases.filter { $0.name != "warm-up" }.compactMap(\.offeredRate)
        var report = RunReport(
            scenario: scenario.name, description: scenario.description, target: options.target.baseURL, run: run,
            startedAt: ISO8601DateFormatter().string(from: startedAt),
            mode: schedule.mode == .open ? "open" : "closed", threads: loops.count, connections: schedule.connections,
            streams: schedule.streams,
            latencyBasis: schedule.mode == .open ? "intended send time (no coordinated omission)" : "send time",
            phases: phases,
            total: RunReport.PhaseReport(
                name: "total", seconds: countedSeconds, offeredRate: totalRate.count == 1 ? totalRate[0] : nil,
                concurrency: nil, recorder: total, operationNames: plan.operations.map(\.name)),
            executions: executionReport, externalWorkers: nil, server: nil, comparisons: [],
            agreementMargin: options.agreementMargin, soak: nil, schedules: scheduleReport,
            httpSinkRequests: sink?.received)
        if let externalWorkers {
            let counts = externalWorkers.completed
            report.externalWorkers = RunReport.WorkerReport(
                workers: scenario.workers!.count, polls: counts.polls, tasksCompleted: counts.tasks, errors: counts.errors,
                lastError: counts.lastError)
        }
        let allSamples = samples.withLock { $0 }
        if let before, let afterLoad, let afterDrain {
            let rpcs = Set(scenario.operations.compactMap(\.rpc))
            report.server = ServerFigures.report(
                before: before, afterLoad: afterLoad, afterDrain: afterDrain, rpcs: rpcs, samples: allSamples)
            report.comparisons = ServerFigures.compare(report, before: before, afterLoad: afterLoad, afterDrain: afterDrain,
                                                       rpcs: rpcs, margin: options.agreementMargin)
        }
        if scenario.soak == true { report.soak = ServerFigures.soak(allSamples) }
        return report
    }

    static func runId() -> String {
        let alphabet = Array("abcdefghijklmnopqrstuvwxyz0123456789")
        return String((0..<8).map { _ in alphabet.randomElement()! })
    }

    /// Tasks per execution of the scenario's first workflow (its `tasks` list).
    static func tasksPerExecution(_ scenario: Scenario) -> Int {
        guard let definition = scenario.setup?.workflows?.first?.definition, case .object(let pairs) = definition,
            let tasks = pairs.first(where: { $0.0 == "tasks" })?.1, case .array(let items) = tasks
        else { return 1 }
        return max(1, items.count)
    }

    /// The scenario's load as phases: an optional warm-up, then one phase
    /// per step (or one for a constant rate, a ramp or a closed loop).
    static func schedule(_ scenario: Scenario, drain: Double) -> LoadSchedule {
        let load = scenario.load
        let seconds = load.duration ?? 3600
        var phases: [LoadSchedule.Phase] = []
        let warmup = load.warmup ?? 0
        switch load.mode {
        case .open:
            let steps = load.steps ?? []
            let first = steps.first ?? load.ramp?.from ?? load.rate ?? 1
            if warmup > 0 { phases.append(.init(name: "warm-up", seconds: warmup, rateFrom: first, rateTo: first, counted: false)) }
            if !steps.isEmpty {
                for rate in steps { phases.append(.init(name: "rate \(Self.number(rate))/s", seconds: seconds, rateFrom: rate, rateTo: rate)) }
            } else if let ramp = load.ramp {
                phases.append(.init(name: "ramp \(Self.number(ramp.from))→\(Self.number(ramp.to))/s", seconds: seconds,
                                    rateFrom: ramp.from, rateTo: ramp.to))
            } else {
                let rate = load.rate ?? 1
                phases.append(.init(name: "rate \(Self.number(rate))/s", seconds: seconds, rateFrom: rate, rateTo: rate))
            }
        case .closed:
            let concurrency = load.concurrency ?? 1
            if warmup > 0 { phases.append(.init(name: "warm-up", seconds: warmup, concurrency: concurrency, counted: false)) }
            phases.append(.init(name: "concurrency \(concurrency)", seconds: seconds, concurrency: concurrency))
        }
        return LoadSchedule(
            mode: load.mode == .open ? .open : .closed, phases: phases, count: load.count,
            connections: load.connections ?? 4, streams: load.streams ?? 100, drainSeconds: drain)
    }

    static func number(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(format: "%.1f", value)
    }

    static func printProgress(
        _ now: ProgressSnapshot, last: ProgressSnapshot, seconds: Double, total: Double, sample: ServerWatch.Sample?
    ) {
        let done = Double((now.succeeded - last.succeeded) + (now.refused - last.refused) + (now.failed - last.failed))
        let p99 = now.interval.totalCount > 0 ? Double(now.interval.valueAtPercentile(99)) / 1000 : 0
        var line = String(
            format: "[%5.1fs] %7.0f/s  ok %d  refused %d  errors %d  p99 %.1f ms  in flight %d  backlog %d",
            total, done / max(seconds, 0.001), now.succeeded, now.refused, now.failed, p99, now.inFlight, now.backlog)
        if let sample {
            line += String(format: "  | server queue %.0f  in-flight execs %.0f  rss %.0f MB", sample.queueReady, sample.executionsInFlight,
                           sample.rssBytes / 1_048_576)
        }
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }
}
