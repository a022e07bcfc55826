"""The agent's own services and health checks: definitions (pure), local state, check runners, persistence, and
the manager that ties them to the agent (registration from config and the API, publishing to the catalog)."""
