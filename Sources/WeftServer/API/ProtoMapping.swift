import Foundation
import SwiftProtobuf
import WeftEngine
import WeftProto
import WeftRPC
import WeftStore

/// Conversions between protobuf messages and store records. The API layer is
/// the only place that knows both.
enum ProtoMapping {
    /// Millisecond precision: what the store keeps, so a value reads back
    /// exactly as it was first returned.
    static func timestamp(_ date: Date) -> Google_Protobuf_Timestamp {
        let ms = (date.timeIntervalSince1970 * 1000).rounded()
        var timestamp = Google_Protobuf_Timestamp()
        timestamp.seconds = Int64((ms / 1000).rounded(.down))
        timestamp.nanos = Int32((ms - Double(timestamp.seconds) * 1000) * 1_000_000)
        return timestamp
    }

    static func duration(ms: Int64) -> Google_Protobuf_Duration {
        var duration = Google_Protobuf_Duration()
        duration.seconds = ms / 1000
        duration.nanos = Int32((ms % 1000) * 1_000_000)
        return duration
    }

    /// The proto3 range of a Duration (±10,000 years); binary protobuf does
    /// not enforce it, so it is checked here before any arithmetic.
    static let maxDurationSeconds: Int64 = 315_576_000_000

    static func milliseconds(_ duration: Google_Protobuf_Duration, field: String) throws -> Int64 {
        guard abs(duration.seconds) <= maxDurationSeconds, abs(duration.nanos) < 1_000_000_000 else {
            throw RPCError(code: .invalidArgument, message: "\(field) is out of range for a duration")
        }
        return duration.seconds * 1000 + Int64(duration.nanos / 1_000_000)
    }

    /// The instants a schedule, preview or backfill may name: 1970 to the
    /// year 9000 (the store writes four-digit years; binary protobuf
    /// carries any seconds).
    static let dateRange = Date(timeIntervalSince1970: 0)...ScheduleClock.latest

    /// A timestamp of a request, checked against `dateRange`.
    static func date(_ timestamp: Google_Protobuf_Timestamp, field: String) throws -> Date {
        let seconds = timestamp.seconds
        guard seconds >= 0, seconds <= Int64(ScheduleClock.latest.timeIntervalSince1970),
            (0..<1_000_000_000).contains(timestamp.nanos)
        else {
            throw RPCError(code: .invalidArgument, message: "\(field) must be from 1970-01-01 to 9000-01-01")
        }
        return timestamp.date
    }

    // MARK: JSON values

    /// JSON from a protobuf Value. NaN and infinities have no JSON form
    /// (binary protobuf can carry them), so they are rejected, never stored.
    static func jsonValue(_ value: Google_Protobuf_Value, field: String) throws -> JSONValue {
        switch value.kind {
        case .nullValue, nil: return .null
        case .numberValue(let n):
            guard n.isFinite else { throw RPCError(code: .invalidArgument, message: "\(field) holds a non-finite number") }
            return .number(n)
        case .stringValue(let s): return .string(s)
        case .boolValue(let b): return .bool(b)
        case .structValue(let s): return try jsonValue(s, field: field)
        case .listValue(let l): return .array(try l.values.map { try jsonValue($0, field: field) })
        }
    }

    static func jsonValue(_ value: Google_Protobuf_Struct, field: String) throws -> JSONValue {
        .object(try value.fields.mapValues { try jsonValue($0, field: field) })
    }

    static func protoValue(_ value: JSONValue) -> Google_Protobuf_Value {
        switch value {
        case .null: return Google_Protobuf_Value(nilLiteral: ())
        case .bool(let b): return Google_Protobuf_Value(boolValue: b)
        case .number(let n): return Google_Protobuf_Value(numberValue: n)
        case .string(let s): return Google_Protobuf_Value(stringValue: s)
        case .array(let a): return Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: a.map(protoValue)))
        case .object: return Google_Protobuf_Value(structValue: protoStruct(value))
        }
    }

    static func protoStruct(_ value: JSONValue) -> Google_Protobuf_Struct {
        var result = Google_Protobuf_Struct()
        result.fields = (value.objectValue ?? [:]).mapValues(protoValue)
        return result
    }

    // MARK: Users

    static func user(_ record: UserRecord) -> Weft_V1_User {
        var user = Weft_V1_User()
        user.id = record.id
        user.email = record.email
        user.name = record.name
        user.createdAt = timestamp(record.createdAt)
        user.updatedAt = timestamp(record.updatedAt)
        return user
    }

    // MARK: Tasks

    /// Defaults applied to a retry policy whose fields are left at zero.
    static func retryRecord(_ retry: Weft_V1_RetryPolicy) throws -> RetryPolicyRecord {
        guard retry.backoffMultiplier.isFinite, retry.jitter.isFinite else {
            throw RPCError(code: .invalidArgument, message: "retry holds a non-finite number")
        }
        return RetryPolicyRecord(
            maxAttempts: retry.maxAttempts == 0 ? 3 : Int(retry.maxAttempts),
            initialBackoffMs: retry.hasInitialBackoff ? try milliseconds(retry.initialBackoff, field: "retry.initialBackoff") : 1000,
            maxBackoffMs: retry.hasMaxBackoff ? try milliseconds(retry.maxBackoff, field: "retry.maxBackoff") : 60_000,
            backoffMultiplier: retry.backoffMultiplier == 0 ? 2 : retry.backoffMultiplier,
            jitter: retry.jitter,
            retryableErrors: retry.retryableErrors,
            totalTimeoutMs: retry.hasTotalTimeout ? try milliseconds(retry.totalTimeout, field: "retry.totalTimeout") : nil,
            continueOnFailure: retry.continueOnFailure ? true : nil)
    }

    static func retryPolicy(_ record: RetryPolicyRecord) -> Weft_V1_RetryPolicy {
        var retry = Weft_V1_RetryPolicy()
        retry.maxAttempts = Int32(clamping: record.maxAttempts)
        retry.initialBackoff = duration(ms: record.initialBackoffMs)
        retry.maxBackoff = duration(ms: record.maxBackoffMs)
        retry.backoffMultiplier = record.backoffMultiplier
        retry.jitter = record.jitter
        retry.retryableErrors = record.retryableErrors
        if let total = record.totalTimeoutMs { retry.totalTimeout = duration(ms: total) }
        retry.continueOnFailure = record.continueOnFailure ?? false
        return retry
    }

    struct TaskFields {
        var key: String
        var name: String
        var description: String
        var action: String
        var config: Google_Protobuf_Struct?
        var dependsOn: [String]
        var retry: Weft_V1_RetryPolicy?
        var timeout: Google_Protobuf_Duration?
    }

    static func fields(_ task: Weft_V1_Task) -> TaskFields {
        TaskFields(
            key: task.key, name: task.name, description: task.description_p, action: task.action,
            config: task.hasConfig ? task.config : nil, dependsOn: task.dependsOn, retry: task.hasRetry ? task.retry : nil,
            timeout: task.hasTimeout ? task.timeout : nil)
    }

    static func taskRecord(_ fields: TaskFields, id: String, workflowId: String, createdAt: Date, now: Date) throws
        -> TaskRecord
    {
        var timeoutMs: Int64?
        if let timeout = fields.timeout {
            timeoutMs = try milliseconds(timeout, field: "task \"\(fields.name)\": timeout")
            if timeoutMs! <= 0 {
                throw DefinitionError("task \"\(fields.name)\": timeout must be positive")
            }
        }
        return TaskRecord(
            id: id, workflowId: workflowId, key: fields.key.trimmingCharacters(in: .whitespaces), name: fields.name,
            description: fields.description,
            action: TaskType(rawValue: fields.action.trimmingCharacters(in: .whitespaces).lowercased()),
            config: try fields.config.map { try jsonValue($0, field: "task \"\(fields.name)\": config") } ?? .emptyObject,
            dependsOn: fields.dependsOn, retry: try fields.retry.map(retryRecord), timeoutMs: timeoutMs,
            createdAt: createdAt, updatedAt: now)
    }

    /// A task as a viewer sees it: credential fields masked.
    static func task(_ record: TaskRecord, masked: Bool) -> Weft_V1_Task {
        var task = task(record)
        if masked { task.config = protoStruct(CredentialFields.masked(record.config)) }
        return task
    }

    static func task(_ record: TaskRecord) -> Weft_V1_Task {
        var task = Weft_V1_Task()
        task.id = record.id
        task.workflowID = record.workflowId
        task.key = record.key
        task.name = record.name
        task.description_p = record.description
        task.action = record.action.rawValue
        task.config = protoStruct(record.config)
        task.dependsOn = record.dependsOn
        if let retry = record.retry { task.retry = retryPolicy(retry) }
        if let timeout = record.timeoutMs { task.timeout = duration(ms: timeout) }
        task.createdAt = timestamp(record.createdAt)
        task.updatedAt = timestamp(record.updatedAt)
        return task
    }

    // MARK: Workflows

    static func workflow(_ record: WorkflowRecord, role: WorkflowRole?, includeTasks: Bool = true) -> Weft_V1_Workflow {
        var workflow = Weft_V1_Workflow()
        workflow.id = record.id
        workflow.name = record.name
        workflow.description_p = record.description
        // Viewers (and anyone below editor) see credential fields masked.
        let masked = !(role.map { $0 >= .editor } ?? false)
        if includeTasks { workflow.tasks = record.tasks.map { task($0, masked: masked) } }
        workflow.createdAt = timestamp(record.createdAt)
        workflow.updatedAt = timestamp(record.updatedAt)
        workflow.ownerID = record.ownerId
        workflow.version = Int32(clamping: record.version)
        workflow.etag = record.etag
        workflow.role = role?.rawValue ?? ""
        workflow.orgID = record.orgId
        return workflow
    }
}
