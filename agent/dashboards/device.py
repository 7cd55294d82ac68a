"""Device detail: everything one device exports, for the engineer chasing its fault. Rows
cover every kind (network, video, power and environment); a row shows what the device has."""

from __future__ import annotations

from agent.dashboards.panels import (
    OK_WHEN_ONE,
    OK_WHEN_ZERO,
    Board,
    Column,
    Text,
    device_variable,
    query,
    series_panel,
    site_variable,
    stat_panel,
    table_panel,
    up_down,
    value_map,
)
from agent.dashboards.site import PICTURE_FLAGS

UID = "vigil-device"
D = 'device="$device"'


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil 设备详情", "Vigil device detail"),
              tr("一台设备的在线、采集、故障、网络、视频、供电和环境数据。",
                 "One device: up, collectors, faults, network, video, power, environment."),
              tr, variables=[site_variable(tr), device_variable(tr)])
    b.row(tr("状态", "State"))
    b.add(stat_panel(tr("在线", "Up"), tr("最近一次轮询是否有应答。",
                                        "Whether it answered its last poll."),
                     [query(f"vigil_device_up{{{D}}}", instant=True)],
                     thresholds=OK_WHEN_ONE, mappings=up_down(tr)), 4, 4)
    b.add(stat_panel(tr("采集", "Collectors"),
                     tr("每种采集方式（SNMP、ONVIF、RTSP、可达性）是否成功。",
                        "Whether each collector (SNMP, ONVIF, RTSP, reachability) works."),
                     [query(f"vigil_collector_up{{{D}}}", "{{collector}}", instant=True)],
                     thresholds=OK_WHEN_ONE, mappings=up_down(tr)), 8, 4)
    b.add(stat_panel(tr("当前故障", "Faults now"), "",
                     [query(f"count(vigil_fault_active{{{D}}}) or vector(0)", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("轮询耗时", "Poll time"), "",
                     [query(f"vigil_device_poll_duration_seconds{{{D}}}", instant=True)],
                     unit="s"), 4, 4)
    b.add(stat_panel(tr("运行时间", "Uptime"), tr("设备自上次重启以来的时间（sysUpTime）。",
                                               "Time since the device last restarted."),
                     [query(f"vigil_device_uptime_seconds{{{D}}}", instant=True)],
                     unit="s"), 4, 4)
    b.add(table_panel(tr, tr("清单与型号", "Inventory and model"),
                      tr("清单中的名称、地址、上联和供电，以及设备自报的厂商、型号、固件。",
                         "The inventory's name, address, uplink and power, and the vendor, "
                         "model and firmware the device reports."),
                      [Column(tr("清单", "Inventory"),
                              f"max by (device, name, address, profile, uplink_switch, "
                              f"uplink_port, powered_by) (vigil_device_inventory_info{{{D}}})")],
                      hide=["Value"]), 12, 4)
    b.add(table_panel(tr, tr("设备自报信息", "Reported identity"), "",
                      [Column(tr("信息", "Info"), f"vigil_device_info{{{D}}}")],
                      hide=["Value", "kind", "site", "device"]), 12, 4)
    b.add(series_panel(tr("在线历史", "Up over time"), "",
                       [query(f"vigil_device_up{{{D}}}", tr("在线", "up"))],
                       thresholds=OK_WHEN_ONE), 12, 7)
    b.add(series_panel(tr("离线原因", "Why it was down"),
                       tr("离线期间的原因，按采集方式：timeout 超时、refused 拒绝、auth 认证失败…",
                          "While down, the reason per collector: timeout, refused, auth, ..."),
                       [query(f"vigil_device_down_reason{{{D}}} == 1",
                              "{{collector}} {{reason}}")], bars=True), 12, 7)
    b.add(table_panel(tr, tr("故障", "Faults"), tr("这台设备正在告警的故障。",
                                                 "Faults firing on this device."),
                      [Column(tr("开始时间", "Since"),
                              f"max by (alertname, level) "
                              f"(vigil_fault_since_timestamp_seconds{{{D}}}) * 1000",
                              unit="dateTimeAsLocal")]), 24, 5)

    b.row(tr("网络", "Network"))
    b.add(series_panel(tr("往返时延", "Round trip"), tr("ICMP 回显的平均往返时间。",
                                                     "Mean ICMP echo round trip."),
                       [query(f"vigil_reach_icmp_rtt_seconds{{{D}}}", "ICMP"),
                        query(f"vigil_reach_tcp_connect_seconds{{{D}}}", "TCP {{port}}")],
                       unit="s"), 8, 8)
    b.add(series_panel(tr("丢包率", "Packet loss"), "",
                       [query(f"vigil_reach_icmp_loss_ratio{{{D}}}", "ICMP")],
                       unit="percentunit"), 8, 8)
    b.add(table_panel(tr, tr("接口", "Interfaces"), "",
                      [Column(tr("状态", "Status"),
                              f"max by (interface) (vigil_interface_oper_status{{{D}}})",
                              mappings=value_map({1: (tr("运行", "up"), "green"),
                                                  2: (tr("停止", "down"), "red"),
                                                  7: (tr("下层停止", "lower down"), "red")}),
                              colour=True)]), 8, 8)
    b.add(series_panel(tr("接口流量", "Interface traffic"), "",
                       [query(f"rate(vigil_interface_received_bytes_total{{{D}}}"
                              f"[$__rate_interval]) * 8",
                              tr("{{interface}} 收", "{{interface}} in")),
                        query(f"rate(vigil_interface_sent_bytes_total{{{D}}}"
                              f"[$__rate_interval]) * 8",
                              tr("{{interface}} 发", "{{interface}} out"))], unit="bps"), 12, 8)
    b.add(series_panel(tr("接口错误", "Interface errors"), "",
                       [query(f"rate(vigil_interface_received_errors_total{{{D}}}"
                              f"[$__rate_interval])", "{{interface}}")], unit="pps"), 12, 8)

    b.row(tr("视频", "Video"))
    b.add(stat_panel(tr("时钟偏差", "Clock offset"),
                     tr("摄像机时钟减去 Agent 时钟：录像时间戳是否可信。",
                        "Camera clock minus the agent's: whether recordings' times hold."),
                     [query(f"vigil_onvif_clock_offset_seconds{{{D}}}", instant=True)],
                     unit="s"), 6, 4)
    b.add(stat_panel(tr("码流", "Stream"), "",
                     [query(f"vigil_rtsp_frames_per_second{{{D}}}", tr("帧率", "fps"),
                            instant=True),
                      query(f"vigil_rtsp_bitrate_bytes_per_second{{{D}}} * 8",
                            tr("码率 bit/s", "bit/s"), instant=True)]), 6, 4)
    b.add(stat_panel(tr("画面异常", "Picture faults"),
                     tr("画面诊断发现的异常：1 为有该异常。", "Picture diagnosis: 1 is faulty."),
                     [query(PICTURE_FLAGS.replace('site="$site"', D), "{{__name__}}",
                            instant=True)], thresholds=OK_WHEN_ZERO), 12, 4)
    b.add(series_panel(tr("画面指标", "Picture measures"),
                       tr("亮度、对比度、运动量（0 附近即冻结）。",
                          "Brightness, contrast, motion (near 0: frozen)."),
                       [query(f"vigil_video_brightness_ratio{{{D}}}", tr("亮度", "brightness")),
                        query(f"vigil_video_contrast_ratio{{{D}}}", tr("对比度", "contrast")),
                        query(f"vigil_video_motion_ratio{{{D}}}", tr("运动", "motion"))],
                       unit="percentunit"), 12, 8)
    b.add(series_panel(tr("取流耗时", "Stream timings"), "",
                       [query(f"vigil_rtsp_describe_seconds{{{D}}}", "DESCRIBE"),
                        query(f"vigil_rtsp_first_frame_seconds{{{D}}}",
                              tr("首帧", "first frame"))], unit="s"), 12, 8)

    b.row(tr("供电与环境", "Power and environment"))
    b.add(series_panel(tr("UPS 电量与负载", "UPS charge and load"), "",
                       [query(f"vigil_ups_battery_charge_ratio{{{D}}}", tr("电量", "charge")),
                        query(f"vigil_ups_output_load_ratio{{{D}}}",
                              tr("负载 {{line}}", "load {{line}}"))],
                       unit="percentunit"), 8, 8)
    b.add(series_panel(tr("PoE 端口功率", "PoE port power"), "",
                       [query(f"vigil_poe_port_power_watts{{{D}}}", "{{interface}}")],
                       unit="watt"), 8, 8)
    b.add(series_panel(tr("温度", "Temperature"), "",
                       [query(f"vigil_sensor_celsius{{{D}}}", "{{sensor}}")], unit="celsius"),
          8, 8)
    return b
