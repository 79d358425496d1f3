-- A job's worker pod template on Kubernetes (image, service account, env,
-- volumes), as JSON; '{}' is the deployment's defaults.
ALTER TABLE jobs ADD COLUMN worker TEXT NOT NULL DEFAULT '{}';
