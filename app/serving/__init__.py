"""The HTTPS edge: the apps, their limits, TLS, certificates, metrics, logs."""
