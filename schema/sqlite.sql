-- tasker schema version 7 for sqlite.
-- Generated from tasker/store/schema.py by `tasker schema --write schema`; do not edit.

CREATE TABLE IF NOT EXISTS journal_replays (
	journal_id VARCHAR(36) NOT NULL, 
	hostname VARCHAR(255), 
	process_id INTEGER, 
	events INTEGER NOT NULL, 
	replayed_at DATETIME NOT NULL, 
	PRIMARY KEY (journal_id)
);

CREATE TABLE IF NOT EXISTS run_counts (
	shard INTEGER NOT NULL, 
	n_not_started BIGINT DEFAULT '0' NOT NULL, 
	n_started BIGINT DEFAULT '0' NOT NULL, 
	n_running BIGINT DEFAULT '0' NOT NULL, 
	n_completed BIGINT DEFAULT '0' NOT NULL, 
	n_failed BIGINT DEFAULT '0' NOT NULL, 
	n_skipped BIGINT DEFAULT '0' NOT NULL, 
	n_cancelled BIGINT DEFAULT '0' NOT NULL, 
	PRIMARY KEY (shard)
);

CREATE TABLE IF NOT EXISTS stages (
	stage_id INTEGER NOT NULL, 
	stage_name VARCHAR(100) NOT NULL, 
	stage_order INTEGER, 
	description TEXT, 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	PRIMARY KEY (stage_id), 
	CONSTRAINT uq_stages_stage_name UNIQUE (stage_name)
);

CREATE INDEX ix_stages_stage_order ON stages (stage_order);

CREATE TABLE IF NOT EXISTS tasks (
	task_id INTEGER NOT NULL, 
	stage_id INTEGER NOT NULL, 
	task_name VARCHAR(255) NOT NULL, 
	task_type VARCHAR(20), 
	task_order INTEGER, 
	description TEXT, 
	script_path TEXT, 
	script_filename VARCHAR(255), 
	log_path TEXT, 
	log_filename VARCHAR(255), 
	created_at DATETIME NOT NULL, 
	updated_at DATETIME NOT NULL, 
	last_run_id VARCHAR(36), 
	last_start_time DATETIME, 
	PRIMARY KEY (task_id), 
	CONSTRAINT uq_tasks_stage_task UNIQUE (stage_id, task_name), 
	CONSTRAINT fk_tasks_stage FOREIGN KEY(stage_id) REFERENCES stages (stage_id)
);

CREATE INDEX ix_tasks_task_order ON tasks (stage_id, task_order);

CREATE TABLE IF NOT EXISTS task_runs (
	run_id VARCHAR(36) NOT NULL, 
	task_id INTEGER NOT NULL, 
	parent_run_id VARCHAR(36), 
	status VARCHAR(20) NOT NULL, 
	hostname VARCHAR(255) NOT NULL, 
	process_id INTEGER NOT NULL, 
	parent_pid INTEGER, 
	process_start_time DOUBLE, 
	user_name VARCHAR(100), 
	python_version VARCHAR(50), 
	command_line TEXT, 
	script_path TEXT, 
	script_filename VARCHAR(255), 
	log_path TEXT, 
	log_filename VARCHAR(255), 
	version VARCHAR(100), 
	git_commit VARCHAR(64), 
	git_branch VARCHAR(255), 
	git_dirty BOOLEAN, 
	environment VARCHAR(100), 
	start_time DATETIME, 
	end_time DATETIME, 
	last_update DATETIME NOT NULL, 
	heartbeat DATETIME, 
	total_subtasks INTEGER, 
	current_subtask INTEGER, 
	overall_percent_complete DOUBLE, 
	overall_progress_message TEXT, 
	exit_code INTEGER, 
	cpu_seconds DOUBLE, 
	peak_memory_mb DOUBLE, 
	error_type VARCHAR(255), 
	error_message TEXT, 
	error_detail TEXT, 
	boot_id VARCHAR(64), 
	pid_namespace VARCHAR(64), 
	log_tail TEXT, 
	process_start_uptime DOUBLE, 
	PRIMARY KEY (run_id), 
	CONSTRAINT ck_task_runs_status CHECK (status IN ('NOT_STARTED', 'STARTED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')), 
	CONSTRAINT fk_task_runs_task FOREIGN KEY(task_id) REFERENCES tasks (task_id) ON DELETE CASCADE
);

CREATE INDEX ix_task_runs_active ON task_runs (status, hostname) WHERE status IN ('STARTED', 'RUNNING');

CREATE INDEX ix_task_runs_host_start ON task_runs (hostname, start_time, run_id);

CREATE INDEX ix_task_runs_parent_start ON task_runs (parent_run_id, start_time, run_id);

CREATE INDEX ix_task_runs_start_run ON task_runs (start_time, run_id, task_id);

CREATE INDEX ix_task_runs_status_start ON task_runs (status, start_time, run_id);

CREATE INDEX ix_task_runs_task_start ON task_runs (task_id, start_time, run_id);

CREATE INDEX ix_task_runs_task_status ON task_runs (task_id, status, start_time, run_id);

CREATE TABLE IF NOT EXISTS subtask_progress (
	progress_id INTEGER NOT NULL, 
	run_id VARCHAR(36) NOT NULL, 
	subtask_number INTEGER NOT NULL, 
	subtask_name VARCHAR(500), 
	status VARCHAR(20) NOT NULL, 
	start_time DATETIME, 
	end_time DATETIME, 
	last_update DATETIME NOT NULL, 
	percent_complete DOUBLE, 
	progress_message TEXT, 
	items_total BIGINT, 
	items_complete BIGINT DEFAULT '0' NOT NULL, 
	error_message TEXT, 
	PRIMARY KEY (progress_id), 
	CONSTRAINT ck_subtask_progress_status CHECK (status IN ('NOT_STARTED', 'STARTED', 'RUNNING', 'COMPLETED', 'FAILED', 'SKIPPED', 'CANCELLED')), 
	CONSTRAINT uq_subtask_progress_run_number UNIQUE (run_id, subtask_number), 
	CONSTRAINT fk_subtask_progress_run FOREIGN KEY(run_id) REFERENCES task_runs (run_id) ON DELETE CASCADE
);

DROP VIEW IF EXISTS current_task_status;

CREATE VIEW current_task_status AS
SELECT stages.stage_name, stages.stage_order, tasks.task_id, tasks.task_name, tasks.task_type, tasks.task_order, tasks.script_path, tasks.script_filename, tasks.log_path, tasks.log_filename, CASE WHEN (task_runs.status IS NULL) THEN 'NOT_STARTED' ELSE task_runs.status END AS status, task_runs.run_id, task_runs.hostname, task_runs.process_id, task_runs.user_name, task_runs.start_time, task_runs.end_time, task_runs.last_update, task_runs.total_subtasks, task_runs.current_subtask, task_runs.overall_percent_complete, task_runs.overall_progress_message, subtask_progress.subtask_name, subtask_progress.status AS subtask_status, subtask_progress.percent_complete AS subtask_percent_complete, subtask_progress.items_total, subtask_progress.items_complete, task_runs.error_message, subtask_progress.start_time AS subtask_start_time 
FROM stages JOIN tasks ON tasks.stage_id = stages.stage_id LEFT OUTER JOIN task_runs ON task_runs.run_id = tasks.last_run_id LEFT OUTER JOIN subtask_progress ON subtask_progress.run_id = task_runs.run_id AND subtask_progress.subtask_number = task_runs.current_subtask;

DROP VIEW IF EXISTS active_tasks;

CREATE VIEW active_tasks AS
SELECT task_runs.run_id, task_runs.task_id, stages.stage_name, stages.stage_order, tasks.task_name, tasks.task_type, tasks.task_order, task_runs.status, task_runs.hostname, task_runs.process_id, task_runs.parent_pid, task_runs.parent_run_id, task_runs.user_name, task_runs.python_version, task_runs.command_line, task_runs.script_path, task_runs.script_filename, task_runs.log_path, task_runs.log_filename, task_runs.version, task_runs.git_commit, task_runs.git_branch, task_runs.git_dirty, task_runs.environment, task_runs.start_time, task_runs.end_time, task_runs.last_update, task_runs.heartbeat, task_runs.total_subtasks, task_runs.current_subtask, task_runs.overall_percent_complete, task_runs.overall_progress_message, task_runs.exit_code, task_runs.cpu_seconds, task_runs.peak_memory_mb, task_runs.error_type, task_runs.error_message, task_runs.error_detail, task_runs.process_start_time, task_runs.boot_id, task_runs.pid_namespace, task_runs.process_start_uptime 
FROM task_runs JOIN tasks ON tasks.task_id = task_runs.task_id JOIN stages ON stages.stage_id = tasks.stage_id 
WHERE task_runs.status IN ('STARTED', 'RUNNING');

INSERT OR IGNORE INTO run_counts (shard) VALUES (0);

DROP TRIGGER IF EXISTS trg_task_runs_count_insert;

CREATE TRIGGER trg_task_runs_count_insert AFTER INSERT ON task_runs FOR EACH ROW
BEGIN
    UPDATE run_counts SET n_not_started = n_not_started + (NEW.status = 'NOT_STARTED'), n_started = n_started + (NEW.status = 'STARTED'), n_running = n_running + (NEW.status = 'RUNNING'), n_completed = n_completed + (NEW.status = 'COMPLETED'), n_failed = n_failed + (NEW.status = 'FAILED'), n_skipped = n_skipped + (NEW.status = 'SKIPPED'), n_cancelled = n_cancelled + (NEW.status = 'CANCELLED') WHERE shard = 0;
END;

DROP TRIGGER IF EXISTS trg_task_runs_count_update;

CREATE TRIGGER trg_task_runs_count_update AFTER UPDATE OF status ON task_runs FOR EACH ROW WHEN NEW.status IS NOT OLD.status
BEGIN
    UPDATE run_counts SET n_not_started = n_not_started + (NEW.status = 'NOT_STARTED') - (OLD.status = 'NOT_STARTED'), n_started = n_started + (NEW.status = 'STARTED') - (OLD.status = 'STARTED'), n_running = n_running + (NEW.status = 'RUNNING') - (OLD.status = 'RUNNING'), n_completed = n_completed + (NEW.status = 'COMPLETED') - (OLD.status = 'COMPLETED'), n_failed = n_failed + (NEW.status = 'FAILED') - (OLD.status = 'FAILED'), n_skipped = n_skipped + (NEW.status = 'SKIPPED') - (OLD.status = 'SKIPPED'), n_cancelled = n_cancelled + (NEW.status = 'CANCELLED') - (OLD.status = 'CANCELLED') WHERE shard = 0;
END;

DROP TRIGGER IF EXISTS trg_task_runs_count_delete;

CREATE TRIGGER trg_task_runs_count_delete AFTER DELETE ON task_runs FOR EACH ROW
BEGIN
    UPDATE run_counts SET n_not_started = n_not_started - (OLD.status = 'NOT_STARTED'), n_started = n_started - (OLD.status = 'STARTED'), n_running = n_running - (OLD.status = 'RUNNING'), n_completed = n_completed - (OLD.status = 'COMPLETED'), n_failed = n_failed - (OLD.status = 'FAILED'), n_skipped = n_skipped - (OLD.status = 'SKIPPED'), n_cancelled = n_cancelled - (OLD.status = 'CANCELLED') WHERE shard = 0;
END;

CREATE TABLE IF NOT EXISTS schema_info (
	"key" VARCHAR(64) NOT NULL, 
	value VARCHAR(255) NOT NULL, 
	PRIMARY KEY ("key")
);

INSERT INTO schema_info (key, value) VALUES ('schema_version', '7');
