import Foundation

/// One step of a knee search, as charted and reported.
struct KneeStep: Codable, Sendable {
    var offeredRate: Double
    /// Calls (or, for executions, completed executions) per second.
    var throughput: Double
    var p50Ms: Double
    var p99Ms: Double
    var serverCPUCores: Double?
    var serverQueueMax: Double?
    var withinSLO: Bool
    var misses: [String]
}

/// An SVG line chart of a knee search: throughput and p50/p99 latency
/// against offered load, and the server's CPU and ready-queue depth on a
/// second panel. Plain SVG, no script, readable in a browser or on GitHub.
enum KneeChart {
    static func svg(title: String, steps: [KneeStep], knee: Double?, latencyLabel: String) -> String {
        let width = 760.0, panelHeight = 230.0, left = 70.0, right = 70.0, top = 40.0, gap = 60.0
        let plotWidth = width - left - right
        let height = top + panelHeight * 2 + gap + 50
        let maxRate = max(1, steps.map(\.offeredRate).max() ?? 1) * 1.05
        let maxThroughput = max(maxRate, steps.map(\.throughput).max() ?? 1) * 1.05
        let maxLatency = max(1, steps.map(\.p99Ms).max() ?? 1) * 1.1
        let maxCPU = max(1, steps.compactMap(\.serverCPUCores).max() ?? 1) * 1.1
        let maxQueue = max(1, steps.compactMap(\.serverQueueMax).max() ?? 1) * 1.1
        func x(_ rate: Double) -> Double { left + rate / maxRate * plotWidth }
        func y(_ value: Double, _ maxValue: Double, panel: Int) -> Double {
            let base = top + Double(panel) * (panelHeight + gap) + panelHeight
            return base - value / maxValue * panelHeight
        }
        var svg = """
            <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" viewBox="0 0 \(Int(width)) \(Int(height))" font-family="sans-serif" font-size="11">
            <rect width="100%" height="100%" fill="white"/>
            <text x="\(left)" y="20" font-size="14" font-weight="bold">\(escape(title))</text>

            """
        for panel in 0..<2 {
            let y0 = top + Double(panel) * (panelHeight + gap)
            svg += "<rect x=\"\(left)\" y=\"\(y0)\" width=\"\(plotWidth)\" height=\"\(panelHeight)\" fill=\"none\" stroke=\"#999\"/>\n"
            for i in 0...4 {
                let rate = maxRate * Double(i) / 4
                svg += "<line x1=\"\(x(rate))\" y1=\"\(y0)\" x2=\"\(x(rate))\" y2=\"\(y0 + panelHeight)\" stroke=\"#eee\"/>\n"
                svg += "<text x=\"\(x(rate))\" y=\"\(y0 + panelHeight + 14)\" text-anchor=\"middle\">\(Int(rate))</text>\n"
            }
            svg += "<text x=\"\(left + plotWidth / 2)\" y=\"\(y0 + panelHeight + 30)\" text-anchor=\"middle\">offered load (per second)</text>\n"
        }
        // Left and right axis labels.
        func axis(_ panel: Int, _ maxValue: Double, side: String, label: String, color: String) {
            let y0 = top + Double(panel) * (panelHeight + gap)
            let xPos = side == "left" ? left - 6 : left + plotWidth + 6
            let anchor = side == "left" ? "end" : "start"
            for i in 0...4 {
                let value = maxValue * Double(i) / 4
                svg += "<text x=\"\(xPos)\" y=\"\(y(value, maxValue, panel: panel) + 4)\" text-anchor=\"\(anchor)\" fill=\"\(color)\">\(format(value))</text>\n"
            }
            let lx = side == "left" ? 14.0 : width - 14
            svg += "<text transform=\"translate(\(lx),\(y0 + panelHeight / 2)) rotate(-90)\" text-anchor=\"middle\" fill=\"\(color)\">\(escape(label))</text>\n"
        }
        axis(0, maxThroughput, side: "left", label: "throughput (per second)", color: "#1f77b4")
        axis(0, maxLatency, side: "right", label: "\(latencyLabel) latency (ms)", color: "#d62728")
        axis(1, maxCPU, side: "left", label: "server CPU (cores)", color: "#2ca02c")
        axis(1, maxQueue, side: "right", label: "server ready queue (max)", color: "#9467bd")
        func line(_ points: [(Double, Double)], _ maxValue: Double, panel: Int, color: String, dash: Bool = false) {
            guard !points.isEmpty else { return }
            let path = points.map { "\(x($0.0)),\(y($0.1, maxValue, panel: panel))" }.joined(separator: " ")
            svg += "<polyline points=\"\(path)\" fill=\"none\" stroke=\"\(color)\" stroke-width=\"2\"\(dash ? " stroke-dasharray=\"5,3\"" : "")/>\n"
            for point in points {
                svg += "<circle cx=\"\(x(point.0))\" cy=\"\(y(point.1, maxValue, panel: panel))\" r=\"3\" fill=\"\(color)\"/>\n"
            }
        }
        line(steps.map { ($0.offeredRate, $0.offeredRate) }, maxThroughput, panel: 0, color: "#bbb", dash: true)
        line(steps.map { ($0.offeredRate, $0.throughput) }, maxThroughput, panel: 0, color: "#1f77b4")
        line(steps.map { ($0.offeredRate, $0.p50Ms) }, maxLatency, panel: 0, color: "#ff7f0e")
        line(steps.map { ($0.offeredRate, $0.p99Ms) }, maxLatency, panel: 0, color: "#d62728")
        line(steps.compactMap { s in s.serverCPUCores.map { (s.offeredRate, $0) } }, maxCPU, panel: 1, color: "#2ca02c")
        line(steps.compactMap { s in s.serverQueueMax.map { (s.offeredRate, $0) } }, maxQueue, panel: 1, color: "#9467bd")
        for step in steps where !step.withinSLO {
            svg += "<text x=\"\(x(step.offeredRate))\" y=\"\(top + 12)\" text-anchor=\"middle\" fill=\"#d62728\">✗</text>\n"
        }
        if let knee {
            svg += "<line x1=\"\(x(knee))\" y1=\"\(top)\" x2=\"\(x(knee))\" y2=\"\(top + panelHeight * 2 + gap)\" stroke=\"#000\" stroke-dasharray=\"2,3\"/>\n"
            svg += "<text x=\"\(x(knee) + 4)\" y=\"\(top + 24)\">knee \(Int(knee))/s</text>\n"
        }
        // Legend.
        let legend: [(String, String)] = [
            ("#bbb", "offered"), ("#1f77b4", "throughput"), ("#ff7f0e", "p50"), ("#d62728", "p99"), ("#2ca02c", "server CPU"),
            ("#9467bd", "ready queue"),
        ]
        var lx = left
        let ly = height - 12
        for (color, name) in legend {
            svg += "<rect x=\"\(lx)\" y=\"\(ly - 9)\" width=\"12\" height=\"4\" fill=\"\(color)\"/><text x=\"\(lx + 16)\" y=\"\(ly - 4)\">\(name)</text>\n"
            lx += 100
        }
        return svg + "</svg>\n"
    }

    static func format(_ value: Double) -> String {
        value >= 100 ? String(Int(value.rounded())) : value >= 10 ? String(format: "%.0f", value) : String(format: "%.1f", value)
    }

    static func escape(_ text: String) -> String {
        text.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
