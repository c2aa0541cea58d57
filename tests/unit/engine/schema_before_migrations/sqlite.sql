-- The engine's schema on SQLite as create_all made it before migrations (commit 4eeae17): the tables
-- a database made by an engine from before Alembic has, un-versioned. Upgrade tests start from it.

CREATE TABLE conversations (
	id VARCHAR(32) NOT NULL,
	name VARCHAR(1024) NOT NULL,
	type VARCHAR(32) NOT NULL,
	source VARCHAR(16) NOT NULL,
	start_time DATETIME NOT NULL,
	end_time DATETIME,
	metadata JSON NOT NULL,
	analysis_options JSON NOT NULL,
	speaker_events JSON,
	job_count INTEGER NOT NULL,
	created_at DATETIME NOT NULL,
	deleted BOOLEAN NOT NULL,
	PRIMARY KEY (id)
);

CREATE INDEX ix_conversations_start_time ON conversations (start_time);

CREATE TABLE jobs (
	id VARCHAR(36) NOT NULL,
	conversation_id VARCHAR(32) NOT NULL,
	sequence INTEGER NOT NULL,
	kind VARCHAR(16) NOT NULL,
	status VARCHAR(16) NOT NULL,
	reason TEXT,
	options JSON NOT NULL,
	input_path TEXT,
	input_json JSON,
	webhook_url TEXT,
	created_at DATETIME NOT NULL,
	updated_at DATETIME NOT NULL,
	started_at DATETIME,
	finished_at DATETIME,
	claimed_by VARCHAR(128),
	lease_until DATETIME,
	PRIMARY KEY (id)
);

CREATE INDEX ix_jobs_conversation_id ON jobs (conversation_id);

CREATE INDEX ix_jobs_status_created ON jobs (status, created_at);

CREATE TABLE utterances (
	conversation_id VARCHAR(32) NOT NULL,
	position INTEGER NOT NULL,
	job_id VARCHAR(36) NOT NULL,
	data JSON NOT NULL,
	PRIMARY KEY (conversation_id, position)
);

CREATE TABLE insights (
	conversation_id VARCHAR(32) NOT NULL,
	job_id VARCHAR(36),
	data JSON NOT NULL,
	updated_at DATETIME NOT NULL,
	PRIMARY KEY (conversation_id)
);

CREATE TABLE webhook_deliveries (
	seq INTEGER NOT NULL,
	id VARCHAR(36) NOT NULL,
	job_id VARCHAR(36) NOT NULL,
	url TEXT NOT NULL,
	job_status VARCHAR(16) NOT NULL,
	body TEXT NOT NULL,
	state VARCHAR(16) NOT NULL,
	attempts INTEGER NOT NULL,
	next_attempt_at DATETIME NOT NULL,
	last_error TEXT,
	delivered_at DATETIME,
	created_at DATETIME NOT NULL,
	PRIMARY KEY (seq),
	UNIQUE (id)
);

CREATE INDEX ix_webhook_deliveries_job_id ON webhook_deliveries (job_id);

CREATE INDEX ix_webhook_deliveries_state_next ON webhook_deliveries (state, next_attempt_at);

CREATE TABLE engine_secrets (
	name VARCHAR(64) NOT NULL,
	value TEXT NOT NULL,
	PRIMARY KEY (name)
);

CREATE TABLE access_tokens (
	app_id VARCHAR(256) NOT NULL,
	token TEXT NOT NULL,
	expires_at DATETIME NOT NULL,
	PRIMARY KEY (app_id)
);
