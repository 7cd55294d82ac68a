"""RTSP probe of camera streams: OPTIONS/DESCRIBE, decode, video quality diagnosis."""
