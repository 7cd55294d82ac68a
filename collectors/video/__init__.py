"""Video quality diagnosis (视频质量诊断) of decoded camera frames."""
