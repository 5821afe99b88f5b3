"""The stand's services, started in this order and stopped in reverse. Add one: a module and a line here."""

from stand.services.moto import AwsMoto, Moto, seed_aws, seed_spaces
from stand.services.postgres import PostgresPair

SERVICES = [
    PostgresPair(),
    AwsMoto("moto", 5, seed_aws, "aws_default"),
    Moto("spaces", 6, seed_spaces, "do_spaces"),
]
