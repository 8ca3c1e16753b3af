"""Chinese and English headings and value labels for statistics tables (``lang=zh``)."""

from __future__ import annotations

from app.models.statistics import Lang

HEADINGS: dict[str, tuple[str, str]] = {
    "region": ("Region", "地区"),
    "category": ("Category", "类别"),
    "sex": ("Sex", "性别"),
    "age_band": ("Age band", "年龄段"),
    "age": ("Age", "年龄"),
    "ethnicity": ("Ethnicity", "民族"),
    "care_arrangement": ("Care arrangement", "照料方式"),
    "custody_status": ("Custody status", "监护状况"),
    "status": ("Status", "状态"),
    "period": ("Period", "时期"),
    "direction": ("Direction", "变动"),
    "reason": ("Reason", "原因"),
    "type": ("Service", "服务类型"),
    "publisher": ("Agency", "部门"),
    "concern": ("Concern", "报告事由"),
    "urgency": ("Urgency", "紧急程度"),
    "acknowledgement": ("Acknowledged (受理)", "受理情况"),
    "receiver": ("Receiving agency", "接收部门"),
    "count": ("Count", "数量"),
    "suppressed": ("Suppressed", "已抑制"),
    "total": ("Total", "合计"),
}

VALUES_ZH: dict[str, str] = {
    # registry categories
    "left_behind": "留守儿童",
    "orphan": "孤儿",
    "de_facto_unsupported": "事实无人抚养儿童",
    "disability": "残疾儿童",
    "serious_illness": "重病儿童",
    "low_income": "低保/特困家庭儿童",
    "guardian_harm": "受监护侵害儿童",
    "other": "其他",
    # sex, status, flows
    "male": "男",
    "female": "女",
    "active": "在册",
    "exited": "已退出",
    "entry": "新增",
    "exit": "退出",
    "new": "新增",
    "parents_returned": "父母返乡",
    "aged_out": "年满退出",
    "moved": "迁出",
    "death": "死亡",
    # care and custody
    "grandparents": "隔代照料",
    "relatives_or_friends": "亲友代养",
    "institution_or_boarding": "机构/寄宿",
    "one_parent_unable": "一方无监护能力",
    "with_parents": "父母监护",
    "entrusted": "委托监护",
    "kinship_care": "亲属照料",
    "institution": "机构养育",
    "temporary_state": "临时监护",
    "long_term_state": "长期监护",
    "no_effective_guardian": "无人监护",
    "emergency_protection": "应急保护",
    "none": "无记录",
    "unknown": "未填报",
    # mandatory reports: concern, urgency, acknowledgement
    "physical_abuse": "身体伤害",
    "sexual_abuse": "性侵害",
    "neglect": "疏于照料",
    "abandonment": "遗弃",
    "no_guardian": "无人监护",
    "domestic_violence": "家庭暴力",
    "trafficking_or_missing": "拐卖、走失",
    "self_harm": "自伤",
    "immediate_danger": "现实危险",
    "urgent": "紧急",
    "routine": "一般",
    "in_time": "按时受理",
    "late": "逾期受理",
    "overdue": "逾期未受理",
    "awaiting": "待受理",
    "declined": "不予受理",
    "no_receiver": "无接收部门",
    # agencies
    "civil-affairs": "民政",
    "education": "教育",
    "health": "卫健",
    "police": "公安",
    "womens-federation": "妇联",
    # services
    "civil-affairs.home-visit.recorded": "家庭走访",
    "civil-affairs.assistance.granted": "救助发放",
    "civil-affairs.guardianship.assessed": "监护评估",
    "civil-affairs.guardianship.changed": "监护变更",
    "civil-affairs.temporary-guardianship.started": "临时监护开始",
    "civil-affairs.temporary-guardianship.ended": "临时监护结束",
    "health.check.completed": "健康检查",
    "health.medical-aid.needed": "医疗救助需求",
    "health.mental-health.referral": "心理健康转介",
    "health.disability.assessed": "残疾评定",
    "health.rehabilitation.referral": "康复转介",
    "education.dropout-risk.flagged": "辍学风险预警",
    "education.student.dropped-out": "辍学",
    "education.student.returned-to-school": "返校复学",
    "education.student.enrolled": "入学",
    "education.student.transferred": "转学",
    "education.attendance.absence-alert": "缺勤预警",
    "education.psychological-concern.reported": "心理问题报告",
    "police.incident.reported": "案事件报告",
    "police.missing-child.reported": "儿童走失报告",
    "police.missing-child.resolved": "走失儿童找回",
    "police.custody.intervention": "监护干预",
    "police.guardian-duty-failure.reported": "监护失职报告",
    "womens-federation.caring-mother.paired": "爱心妈妈结对",
    "womens-federation.caring-mother.pairing-ended": "爱心妈妈结对结束",
    "womens-federation.family-education.guidance-given": "家庭教育指导",
    "womens-federation.small-wish.fulfilled": "微心愿实现",
    "womens-federation.small-wish.posted": "微心愿发布",
    "womens-federation.small-wish.claimed": "微心愿认领",
}


def headings(names: list[str], lang: Lang) -> dict[str, str]:
    index = 1 if lang is Lang.zh else 0
    return {name: HEADINGS.get(name, (name, name))[index] for name in names}


def value(text: str, lang: Lang) -> str:
    if lang is Lang.zh:
        return VALUES_ZH.get(text, text)
    return text
