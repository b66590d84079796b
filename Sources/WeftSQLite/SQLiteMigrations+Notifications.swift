import GRDB

extension SQLiteMigrations {
    /// Subscriptions, integrations, the outbox, in-app notifications and templates (Step 9).
    static func registerNotifications(_ migrator: inout DatabaseMigrator) {
        migrator.registerMigration("v11-notifications") { db in
            // Subscriptions, integrations and the outbox of the seed's design
            // were never written before this step: rebuilt with what
            // delivering needs (events, filters, sealed secrets, delivery
            // ids, states, claims and an attempt log), plus in-app
            // notifications and organizations' templates.
            try db.execute(sql: """
                DROP INDEX IF EXISTS subscriptions_by_workflow;
                DROP TABLE subscriptions;
                CREATE TABLE subscriptions (
                    id               TEXT PRIMARY KEY NOT NULL,
                    workflow_id      TEXT NOT NULL REFERENCES workflows(id),
                    org_id           TEXT NOT NULL,
                    user_id          TEXT NOT NULL REFERENCES users(id),
                    event_type       TEXT NOT NULL,
                    events           TEXT NOT NULL,
                    notify_via       TEXT NOT NULL,
                    destination      TEXT NOT NULL,
                    integration_id   TEXT,
                    filter           TEXT,
                    deadline_seconds INTEGER,
                    created_at       DATETIME NOT NULL
                );
                CREATE INDEX subscriptions_by_workflow ON subscriptions(workflow_id, id);
                CREATE INDEX subscriptions_by_integration ON subscriptions(integration_id) WHERE integration_id IS NOT NULL;
                DROP INDEX IF EXISTS integrations_by_workflow;
                DROP TABLE integrations;
                CREATE TABLE integrations (
                    id            TEXT PRIMARY KEY NOT NULL,
                    workflow_id   TEXT NOT NULL REFERENCES workflows(id),
                    org_id        TEXT NOT NULL,
                    type          TEXT NOT NULL,
                    name          TEXT NOT NULL DEFAULT '',
                    config        TEXT NOT NULL DEFAULT '{}',
                    -- AES-256-GCM sealed JSON of the secret fields; never in clear.
                    sealed        TEXT,
                    secret_fields TEXT NOT NULL DEFAULT '',
                    display_url   TEXT NOT NULL DEFAULT '',
                    created_by    TEXT NOT NULL,
                    created_at    DATETIME NOT NULL,
                    updated_at    DATETIME NOT NULL
                );
                CREATE INDEX integrations_by_workflow ON integrations(workflow_id, id);
                DROP INDEX IF EXISTS outbox_pending;
                DROP TABLE outbox;
                CREATE TABLE outbox (
                    id              INTEGER PRIMARY KEY AUTOINCREMENT,
                    delivery_id     TEXT NOT NULL UNIQUE,
                    subscription_id TEXT NOT NULL,
                    workflow_id     TEXT NOT NULL,
                    org_id          TEXT NOT NULL,
                    execution_id    TEXT NOT NULL,
                    event           TEXT NOT NULL,
                    channel         TEXT NOT NULL,
                    payload         TEXT NOT NULL,
                    traceparent     TEXT,
                    created_at      DATETIME NOT NULL,
                    state           TEXT NOT NULL DEFAULT 'pending',
                    attempts        INTEGER NOT NULL DEFAULT 0,
                    next_attempt_at DATETIME NOT NULL,
                    delivered_at    DATETIME,
                    last_error      TEXT,
                    -- One JSON object per attempt, appended by the update that
                    -- records it (one row write per outcome, no second table).
                    attempt_log     TEXT NOT NULL DEFAULT '[]'
                );
                CREATE INDEX outbox_pending ON outbox(next_attempt_at, id) WHERE state = 'pending';
                CREATE INDEX outbox_by_subscription ON outbox(subscription_id, id);
                CREATE TABLE notifications (
                    id           TEXT PRIMARY KEY NOT NULL,
                    user_id      TEXT NOT NULL,
                    workflow_id  TEXT NOT NULL,
                    execution_id TEXT NOT NULL,
                    event        TEXT NOT NULL,
                    title        TEXT NOT NULL,
                    body         TEXT NOT NULL,
                    link         TEXT NOT NULL,
                    delivery_id  TEXT NOT NULL UNIQUE,
                    created_at   DATETIME NOT NULL,
                    read_at      DATETIME
                );
                CREATE INDEX notifications_by_user ON notifications(user_id, id);
                CREATE TABLE notification_templates (
                    org_id     TEXT NOT NULL,
                    event      TEXT NOT NULL,
                    subject    TEXT NOT NULL,
                    text       TEXT NOT NULL,
                    html       TEXT NOT NULL,
                    updated_at DATETIME NOT NULL,
                    updated_by TEXT NOT NULL,
                    PRIMARY KEY (org_id, event)
                );
                """)
        }
    }
}
