"""Transports: stream sockets (Unix, TCP, TLS) and datagrams (UDP) on gevent."""
