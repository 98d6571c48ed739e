"""A school in the Graph emulator: two classes, two teachers, three students."""

from __future__ import annotations

from dataclasses import dataclass

from klasblik.server.roster.graph import GraphClient
from tests.support.graph_emulator import GraphEmulator

T1 = "m.devries@school.example"
T2 = "j.jansen@school.example"
ANNA = "anna.bakker@school.example"
BRAM = "bram.dejong@school.example"
CHRIS = "chris.van.der.berg@school.example"


@dataclass
class School:
    graph: GraphEmulator
    school: str
    t1: str
    t2: str
    anna: str
    bram: str
    chris: str
    c7b: str
    c8c: str

    def client(self, token_value: str | None = None) -> GraphClient:
        async def token() -> str:
            return token_value or self.graph.token

        return GraphClient(self.graph.base_url, token, max_wait_s=5)


def fill(graph: GraphEmulator) -> School:
    sid = graph.add_school("De Regenboog", "12AB00")
    t1 = graph.add_user(T1, "Marieke", "de Vries", "teacher", sid)
    t2 = graph.add_user(T2, "Jan", "Jansen", "teacher", sid)
    anna = graph.add_user(ANNA, "Anna", "Bakker", "student", sid)
    bram = graph.add_user(BRAM, "Bram", "de Jong", "student", sid)
    chris = graph.add_user(CHRIS, "Chris", "van der Berg", "student", sid)
    c7b = graph.add_class("7B", sid, [anna, bram], [t1])
    c8c = graph.add_class("8C", sid, [chris], [t2])
    return School(graph, sid, t1, t2, anna, bram, chris, c7b, c8c)
