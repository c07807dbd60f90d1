"""The schema: one list of migrations, written in SQLite's dialect, for both backends.

The PostgreSQL backend runs the same steps through `backend.sql.postgres_ddl`, which maps the
few type names that differ; `SCHEMA_VERSION` is the version both record (SQLite in
`PRAGMA user_version`, PostgreSQL in the `wasupd_schema` table).
"""

from __future__ import annotations

# Each entry upgrades the schema from version i to i + 1. Append only; never edit a shipped step.
MIGRATIONS: list[str] = [
    # 1: sessions and their state history; the message tables of the outbox, inbox and webhooks.
    """
    CREATE TABLE sessions (
        name        TEXT PRIMARY KEY,
        phone       TEXT,
        me          TEXT,
        state       TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT '',
        desired     TEXT NOT NULL DEFAULT 'stopped',
        options     TEXT NOT NULL DEFAULT '{}',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        linked_at   REAL,
        restarts    INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE session_history (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session     TEXT NOT NULL,
        at          REAL NOT NULL,
        from_state  TEXT NOT NULL,
        to_state    TEXT NOT NULL,
        reason      TEXT NOT NULL DEFAULT ''
    );
    CREATE INDEX session_history_by_session ON session_history(session, id);
    CREATE TABLE outbox (
        id              TEXT PRIMARY KEY,
        session         TEXT,
        from_spec       TEXT NOT NULL,
        chat_id         TEXT NOT NULL,
        body            TEXT NOT NULL,
        idempotency_key TEXT UNIQUE,
        state           TEXT NOT NULL,
        wa_id           TEXT,
        attempts        INTEGER NOT NULL DEFAULT 0,
        last_error      TEXT NOT NULL DEFAULT '',
        not_before      REAL NOT NULL DEFAULT 0,
        wait_reason     TEXT NOT NULL DEFAULT '',
        created_at      REAL NOT NULL,
        updated_at      REAL NOT NULL,
        sent_at         REAL,
        delivered_at    REAL,
        read_at         REAL
    );
    CREATE INDEX outbox_by_state ON outbox(state, session, created_at);
    CREATE INDEX outbox_by_wa_id ON outbox(wa_id);
    CREATE TABLE inbox (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        session     TEXT NOT NULL,
        wa_id       TEXT NOT NULL,
        chat_id     TEXT NOT NULL,
        sender      TEXT NOT NULL,
        body        TEXT NOT NULL,
        type        TEXT NOT NULL DEFAULT 'chat',
        t           REAL NOT NULL,
        received_at REAL NOT NULL,
        UNIQUE(session, wa_id)
    );
    CREATE TABLE contacts (
        chat_id     TEXT NOT NULL,
        session     TEXT NOT NULL,
        last_at     REAL NOT NULL,
        PRIMARY KEY (chat_id, session)
    );
    CREATE TABLE webhook_deliveries (
        id          TEXT PRIMARY KEY,
        url         TEXT NOT NULL,
        event       TEXT NOT NULL,
        payload     TEXT NOT NULL,
        state       TEXT NOT NULL DEFAULT 'pending',
        attempts    INTEGER NOT NULL DEFAULT 0,
        next_at     REAL NOT NULL DEFAULT 0,
        last_status INTEGER,
        last_error  TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE INDEX webhook_deliveries_due ON webhook_deliveries(state, next_at);
    """,
    # 2: indexes for pacing (a session's sends by time) and reply stickiness (messages by chat).
    """
    CREATE INDEX outbox_by_session_sent ON outbox(session, sent_at);
    CREATE INDEX outbox_by_chat ON outbox(chat_id, created_at);
    """,
    # 3: indexes for retention (wasupd.store.retention): each batch finds old rows by time
    # instead of scanning every recent one.
    """
    CREATE INDEX outbox_by_updated ON outbox(updated_at);
    CREATE INDEX inbox_by_received ON inbox(received_at);
    CREATE INDEX webhook_deliveries_by_updated ON webhook_deliveries(updated_at);
    CREATE INDEX contacts_by_last ON contacts(last_at);
    CREATE INDEX session_history_by_at ON session_history(at);
    """,
    # 4: contacts by person (LID addressing): a phone number id and/or a LID, the push name;
    # per session the first and last interaction and the messages in and out. Folds in the
    # reply-stickiness rows of schema 1 (their group rows are not people: stickiness for a
    # group reads the inbox and outbox, which hold the same history). Inbox rows carry the
    # sender's number and LID ids.
    """
    ALTER TABLE contacts RENAME TO contacts_v1;
    DROP INDEX contacts_by_last;
    CREATE TABLE contacts (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        pn          TEXT UNIQUE,
        lid         TEXT UNIQUE,
        push_name   TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL,
        CHECK (pn IS NOT NULL OR lid IS NOT NULL)
    );
    CREATE INDEX contacts_by_updated ON contacts(updated_at);
    CREATE TABLE contact_sessions (
        contact_id  INTEGER NOT NULL REFERENCES contacts(id) ON DELETE CASCADE,
        session     TEXT NOT NULL,
        first_at    REAL NOT NULL,
        last_at     REAL NOT NULL,
        msgs_in     INTEGER NOT NULL DEFAULT 0,
        msgs_out    INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (contact_id, session)
    );
    CREATE INDEX contact_sessions_by_last ON contact_sessions(last_at);
    CREATE INDEX contact_sessions_by_session ON contact_sessions(session, last_at);
    INSERT INTO contacts (pn, created_at, updated_at)
        SELECT chat_id, MIN(last_at), MAX(last_at) FROM contacts_v1
        WHERE chat_id LIKE '%@c.us' GROUP BY chat_id;
    INSERT INTO contact_sessions (contact_id, session, first_at, last_at)
        SELECT c.id, v.session, v.last_at, v.last_at FROM contacts_v1 AS v
        JOIN contacts AS c ON c.pn = v.chat_id;
    DROP TABLE contacts_v1;
    ALTER TABLE inbox ADD COLUMN sender_pn TEXT;
    ALTER TABLE inbox ADD COLUMN sender_lid TEXT;
    ALTER TABLE inbox ADD COLUMN push_name TEXT NOT NULL DEFAULT '';
    UPDATE inbox SET sender_pn = sender WHERE sender LIKE '%@c.us';
    CREATE INDEX inbox_by_sender_lid ON inbox(sender_lid);
    CREATE INDEX inbox_by_chat ON inbox(chat_id, received_at);
    """,
    # 5: campaigns (one text to many recipients), each recipient's number, planned time and
    # outbox message; the opt-out suppression list.
    """
    CREATE TABLE campaigns (
        id          INTEGER PRIMARY KEY AUTOINCREMENT,
        name        TEXT NOT NULL UNIQUE,
        state       TEXT NOT NULL,
        body        TEXT NOT NULL,
        numbers     TEXT NOT NULL DEFAULT '[]',
        pinned      INTEGER NOT NULL DEFAULT 0,
        send_window TEXT NOT NULL DEFAULT '',
        start_at    REAL,
        until       REAL,
        plan        TEXT NOT NULL DEFAULT '{}',
        errors      INTEGER NOT NULL DEFAULT 0,
        paused_at   REAL,
        created_at  REAL NOT NULL,
        updated_at  REAL NOT NULL
    );
    CREATE TABLE campaign_recipients (
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        recipient   TEXT NOT NULL,
        line        INTEGER NOT NULL,
        phone       TEXT NOT NULL,
        vars        TEXT NOT NULL DEFAULT '{}',
        session     TEXT,
        planned_at  REAL,
        message_id  TEXT,
        state       TEXT NOT NULL DEFAULT 'pending',
        handed_over INTEGER NOT NULL DEFAULT 0,
        replied_at  REAL,
        PRIMARY KEY (campaign_id, recipient)
    );
    CREATE INDEX campaign_recipients_by_line ON campaign_recipients(campaign_id, line);
    CREATE INDEX campaign_recipients_by_message ON campaign_recipients(message_id);
    CREATE INDEX campaign_recipients_by_recipient ON campaign_recipients(recipient);
    CREATE TABLE suppressions (
        chat_id     TEXT PRIMARY KEY,
        source      TEXT NOT NULL DEFAULT '',
        created_at  REAL NOT NULL
    );
    """,
    # 6: media. An outbox message may carry a file of the media store (by SHA-256; its body
    # is the caption); an inbox row says what file a received message has and whether its
    # bytes were fetched into the store; a campaign may send one file to every recipient
    # (its MediaRef as JSON, '' for text). Indexes for retention (which files are needed).
    """
    ALTER TABLE outbox ADD COLUMN media_sha256 TEXT;
    ALTER TABLE outbox ADD COLUMN media_kind TEXT;
    ALTER TABLE outbox ADD COLUMN media_mime TEXT;
    ALTER TABLE outbox ADD COLUMN media_size INTEGER;
    ALTER TABLE outbox ADD COLUMN media_name TEXT;
    CREATE INDEX outbox_by_media ON outbox(media_sha256) WHERE media_sha256 IS NOT NULL;
    ALTER TABLE inbox ADD COLUMN media_kind TEXT;
    ALTER TABLE inbox ADD COLUMN media_mime TEXT;
    ALTER TABLE inbox ADD COLUMN media_size INTEGER;
    ALTER TABLE inbox ADD COLUMN media_name TEXT;
    ALTER TABLE inbox ADD COLUMN media_sha256 TEXT;
    ALTER TABLE inbox ADD COLUMN media_stored INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX inbox_by_media ON inbox(media_sha256) WHERE media_sha256 IS NOT NULL;
    ALTER TABLE campaigns ADD COLUMN media TEXT NOT NULL DEFAULT '';
    """,
    # 7: a fleet of hosts on one PostgreSQL (wasupd.store.fleet): the hosts and the leases
    # that say which host runs which session (times by the database clock, a fencing token
    # per session). Plain DDL, so SQLite gets the tables too, but only PostgreSQL uses them.
    """
    CREATE TABLE hosts (
        host_id       TEXT PRIMARY KEY,
        max_sessions  INTEGER NOT NULL,
        headroom_mib  INTEGER NOT NULL,
        sessions_then INTEGER NOT NULL DEFAULT 0,
        version       TEXT NOT NULL DEFAULT '',
        started_at    REAL NOT NULL,
        heartbeat_at  REAL NOT NULL,
        draining      INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE leases (
        session       TEXT PRIMARY KEY,
        host_id       TEXT,
        token         INTEGER NOT NULL DEFAULT 0,
        expires_at    REAL NOT NULL DEFAULT 0,
        target        TEXT,
        claimed_at    REAL
    );
    CREATE INDEX leases_by_host ON leases(host_id);
    """,
    # 8: a fleet operated from any host: the QR on offer (JSON: payload, expiry, rotation),
    # written by the session's host so that `session.qr` on any host shows it (NULL when none
    # is on offer), and what an operator on another host asked of the session's host
    # (restart, logout, delete; wasupd.store.fleet), with its outcome.
    """
    ALTER TABLE sessions ADD COLUMN qr TEXT;
    CREATE TABLE session_requests (
        id            INTEGER PRIMARY KEY AUTOINCREMENT,
        session       TEXT NOT NULL,
        op            TEXT NOT NULL,
        args          TEXT NOT NULL DEFAULT '{}',
        requested_by  TEXT NOT NULL,
        requested_at  REAL NOT NULL,
        done_at       REAL,
        error         TEXT
    );
    CREATE INDEX session_requests_open ON session_requests(session) WHERE done_at IS NULL;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
