# Device security services (events, flags, posture).
