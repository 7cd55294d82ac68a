"""Site detail: one site's cameras, switches and PoE, UPS, SPD and environment."""

from __future__ import annotations

from agent.dashboards.panels import (
    CAMERA,
    OK_WHEN_ZERO,
    Board,
    Column,
    Text,
    query,
    series_panel,
    site_variable,
    stat_panel,
    table_panel,
    up_down,
    value_map,
)
from agent.dashboards.power import output_source

UID = "vigil-site"
S = 'site="$site"'
# The picture-quality flags of the diagnosis (1 = that fault is seen).
PICTURE_FLAGS = ('{__name__=~"vigil_video_(dark|overexposed|low_contrast|blurred|color_cast|'
                 'occluded|frozen|signal_lost)", ' + S + "}")


def spd_state(selector: str, by: str) -> str:
    """1 healthy, 0 tripped: dedicated SPD monitors' module state, else the SPD contact of a
    generic contact monitor (the demo's, and most dry-contact SPD alarms)."""
    return (f"min by ({by}) (vigil_spd_status{{{selector}}}) or "
            f'min by ({by}) (1 - vigil_contact_alarm{{{selector}, kind="spd_monitor"}})')


def spd_leakage(selector: str, by: str) -> str:
    """Leakage current: dedicated SPD monitors', else a current sensor of an SPD monitor."""
    return (f"max by ({by}) (vigil_spd_leakage_current_amperes{{{selector}}}) or "
            f'max by ({by}) (vigil_sensor_amperes{{{selector}, kind="spd_monitor"}})')


def spd_strikes(selector: str, by: str, window: str) -> str:
    """Strikes counted in `window`: dedicated counters, else the SPD's counter inputs."""
    return (f"sum by ({by}) (increase(vigil_spd_strikes_total{{{selector}}}[{window}])) or "
            f"sum by ({by}) (increase(vigil_input_pulses_total{{{selector}, "
            f'kind="spd_monitor", input=~"SPD[0-9]*-CNT.*"}}[{window}]))')


def build(tr: Text) -> Board:
    b = Board(UID, tr("Vigil 站点详情", "Vigil site detail"),
              tr("一个站点的摄像机、交换机与 PoE、UPS、防雷和环境。",
                 "One site's cameras, switches and PoE, UPS, SPD and environment."), tr,
              variables=[site_variable(tr)])
    cams = f"vigil_device_up{{{S}, {CAMERA}}}"
    b.row(tr("概况", "Summary"))
    b.add(stat_panel(tr("摄像机 在线/总数", "Cameras up / total"), "",
                     [query(f"sum({cams})", tr("在线", "up"), instant=True),
                      query(f"count({cams})", tr("总数", "total"), instant=True)]), 6, 4)
    b.add(stat_panel(tr("离线设备", "Devices down"), tr("本站点最近一次轮询无应答的设备。",
                                                      "Devices that did not answer."),
                     [query(f"sum(1 - vigil_device_up{{{S}}})", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("故障", "Faults"), tr("本站点正在告警并开出工单的故障。",
                                            "Firing faults that open tickets."),
                     [query(f"count(vigil_fault_active{{{S}}}) or vector(0)", instant=True)],
                     thresholds=OK_WHEN_ZERO), 4, 4)
    b.add(stat_panel(tr("UPS 电池供电", "UPS on battery"), "",
                     [query(f"max(vigil_ups_on_battery{{{S}}})", instant=True)],
                     thresholds=OK_WHEN_ZERO,
                     mappings=value_map({0: (tr("市电", "mains"), "green"),
                                         1: (tr("电池", "battery"), "red")})), 5, 4)
    b.add(stat_panel(tr("未关闭工单", "Open tickets"), "",
                     [query(f"sum(vigil_tickets{{{S}}}) or vector(0)", instant=True)]), 5, 4)

    b.row(tr("摄像机", "Cameras"))
    ok = up_down(tr)
    b.add(table_panel(tr, tr("摄像机", "Cameras"),
                      tr("每台摄像机一行：在线（网络可达并应答）、ONVIF 服务、RTSP 取流、帧率、"
                         "画面异常项数（黑屏、过曝、低对比、模糊、偏色、遮挡、冻结、无信号）、"
                         "时钟偏差和云台故障。点击设备进入设备详情。",
                         "One line per camera: up, ONVIF, RTSP stream, frame rate, picture "
                         "faults seen (dark, overexposed, low contrast, blurred, colour cast, "
                         "occluded, frozen, no signal), clock offset, PTZ error. Click a "
                         "device for its detail."),
                      [Column(tr("在线", "Up"), f"max by (device) ({cams})", mappings=ok,
                              colour=True),
                       Column("ONVIF", f'max by (device) (vigil_collector_up{{{S}, '
                                       f'collector="onvif"}})', mappings=ok, colour=True),
                       Column("RTSP", f'max by (device) (vigil_collector_up{{{S}, '
                                      f'collector="rtsp"}})', mappings=ok, colour=True),
                       Column(tr("帧率", "FPS"),
                              f"max by (device) (vigil_rtsp_frames_per_second{{{S}}})",
                              unit="fps"),
                       Column(tr("画面异常", "Picture faults"),
                              f"sum by (device) ({PICTURE_FLAGS})", thresholds=OK_WHEN_ZERO,
                              colour=True),
                       Column(tr("时钟偏差", "Clock offset"),
                              f"max by (device) (vigil_onvif_clock_offset_seconds{{{S}}})",
                              unit="s"),
                       Column(tr("云台故障", "PTZ error"),
                              f"max by (device) (vigil_onvif_ptz_error{{{S}}})",
                              thresholds=OK_WHEN_ZERO, colour=True)],
                      name_by="device",
                      links={tr("设备", "Device"):
                             "/d/vigil-device/?var-site=$site&var-device=${__value.raw}"}),
          24, 12)

    b.row(tr("交换机与 PoE", "Switches and PoE"))
    sw = f'{S}, kind="switch"'
    b.add(table_panel(tr, tr("交换机", "Switches"),
                      tr("每台交换机：在线、CPU、端口（运行/停止）、PoE 预算与当前功耗、"
                         "PoE 故障端口数。", "Each switch: up, CPU, ports up/down, PoE budget "
                         "and draw, PoE ports in fault."),
                      [Column(tr("在线", "Up"), f"max by (device) (vigil_device_up{{{sw}}})",
                              mappings=ok, colour=True),
                       Column("CPU", f"max by (device) (vigil_cpu_usage_ratio{{{sw}}})",
                              unit="percentunit"),
                       Column(tr("端口运行", "Ports up"),
                              f"sum by (device) (vigil_interface_oper_status{{{sw}}} == bool 1)"),
                       Column(tr("端口停止", "Ports down"),
                              f"sum by (device) (vigil_interface_oper_status{{{sw}}} == bool 2 "
                              f"and vigil_interface_admin_status{{{sw}}} == 1)"),
                       Column(tr("PoE 预算", "PoE budget"),
                              f"sum by (device) (vigil_poe_budget_watts{{{sw}}})", unit="watt"),
                       Column(tr("PoE 功耗", "PoE draw"),
                              f"sum by (device) (vigil_poe_consumption_watts{{{sw}}})",
                              unit="watt"),
                       Column(tr("PoE 故障端口", "PoE ports in fault"),
                              f"sum by (device) (vigil_poe_port_detection_status{{{sw}}} "
                              f">= bool 4 and vigil_poe_port_detection_status{{{sw}}} != 5)",
                              thresholds=OK_WHEN_ZERO, colour=True)],
                      name_by="device"), 24, 7)
    b.add(series_panel(tr("PoE 端口功率", "PoE power per port"),
                       tr("每个 PoE 端口输出的功率：掉到 0 即摄像机断电。",
                          "Power on each PoE port: a drop to 0 is a camera losing power."),
                       [query(f"vigil_poe_port_power_watts{{{S}}}",
                              "{{device}} {{interface}}")], unit="watt"), 12, 8)
    b.add(series_panel(tr("交换机流量", "Switch traffic"),
                       tr("每台交换机所有端口的接收速率（bit/s）。",
                          "Receive rate of every switch over all ports, bit/s."),
                       [query(f"sum by (device) (rate(vigil_interface_received_bytes_total"
                              f"{{{sw}}}[$__rate_interval])) * 8", "{{device}}")],
                       unit="bps"), 12, 8)

    b.row(tr("UPS、防雷与环境", "UPS, SPD and environment"))
    ups = f'{S}, kind="ups"'
    b.add(table_panel(tr, "UPS", tr("本站点 UPS：输出来源、电量、后备时间、负载。",
                                    "The site's UPS: output source, charge, runtime, load."),
                      [Column(tr("在线", "Up"), f"max by (device) (vigil_device_up{{{ups}}})",
                              mappings=ok, colour=True),
                       Column(tr("输出", "Output"),
                              f"max by (device) (vigil_ups_output_source{{{S}}})",
                              mappings=output_source(tr), colour=True),
                       Column(tr("电量", "Charge"),
                              f"min by (device) (vigil_ups_battery_charge_ratio{{{S}}})",
                              unit="percentunit"),
                       Column(tr("后备时间", "Runtime"),
                              f"min by (device) (vigil_ups_battery_runtime_seconds{{{S}}})",
                              unit="s"),
                       Column(tr("负载", "Load"),
                              f"max by (device) (vigil_ups_output_load_ratio{{{S}}})",
                              unit="percentunit")],
                      name_by="device"), 12, 6)
    b.add(table_panel(tr, tr("防雷器（SPD）", "Surge protectors (SPD)"),
                      tr("SPD 状态（脱扣即失去保护）、24 小时雷击次数、泄漏电流。",
                         "SPD state (tripped: no protection left), strikes in 24 h, "
                         "leakage current."),
                      [Column(tr("状态", "State"), spd_state(S, "device"),
                              mappings=value_map({1: (tr("正常", "healthy"), "green"),
                                                  0: (tr("脱扣", "tripped"), "red")}),
                              colour=True),
                       Column(tr("24h 雷击", "Strikes 24 h"), spd_strikes(S, "device", "24h"),
                              thresholds=OK_WHEN_ZERO),
                       Column(tr("泄漏电流", "Leakage"), spd_leakage(S, "device"),
                              unit="amp")],
                      name_by="device"), 12, 6)
    b.add(series_panel(tr("温度", "Temperature"),
                       tr("本站点各传感器温度（机房动环、设备内部）。",
                          "Every temperature sensor of the site."),
                       [query(f"vigil_sensor_celsius{{{S}}}", "{{device}} {{sensor}}")],
                       unit="celsius"), 8, 8)
    b.add(series_panel(tr("湿度", "Humidity"), "",
                       [query(f"vigil_sensor_humidity_ratio{{{S}}}",
                              "{{device}} {{sensor}}")], unit="percentunit"), 8, 8)
    b.add(table_panel(tr, tr("干接点告警", "Contact alarms"),
                      tr("门磁、水浸、烟感、SPD 等干接点：1 为告警。",
                         "Door, water, smoke, SPD contacts: 1 is alarm."),
                      [Column(tr("告警", "Alarm"),
                              f"max by (device, contact) (vigil_contact_alarm{{{S}}})",
                              thresholds=OK_WHEN_ZERO, colour=True)]), 8, 8)
    return b
