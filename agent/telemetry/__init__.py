# Telemetry: CBOR records sealed as COSE_Encrypt0 (AES-CCM), flash queue, MQTT over mutual TLS.
