-- A job's priority (spec field priority): within a team, jobs of higher
-- priority get workers first, then older jobs.
ALTER TABLE jobs ADD COLUMN priority integer NOT NULL DEFAULT 0;
