# Security agent: events (tamper-evident log), posture reports, integrity scan.
