"""The stand's services, started in this order and stopped in reverse. Add one: a module and a line here."""

from stand.services.moto import Moto
from stand.services.postgres import PostgresPair

SERVICES = [PostgresPair(), Moto()]
