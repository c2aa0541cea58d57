from parley_cli.main import app

app()
