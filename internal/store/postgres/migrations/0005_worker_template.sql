-- A job's worker pod template on Kubernetes (image, service account, env,
-- volumes), as JSON; '{}' is the deployment's defaults. Text, not jsonb:
-- the volumes are kept byte for byte as the user wrote them.
ALTER TABLE jobs ADD COLUMN worker text NOT NULL DEFAULT '{}';
