# Deterministic processing: same input, same output. Stateless, so it stores nothing.
def on_input(msg_id, header, body):
    rows = body.get().body
    # Copy before changing: messages are passed by reference, as in Gen2.
    out = [[x, y * 2, z.upper()] for x, y, z in rows]
    api.outputs.output.publish(api.Table(out), header)

api.set_port_callback("input", on_input)
