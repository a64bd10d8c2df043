# The seed's WAL writer. Changes from the seed, all marked "snapgraph:": the driver,
# no cursor reuse after close, the rows and their WAL record are written in ONE
# transaction (the seed wrote them separately, so a crash in between duplicated
# the batch), and epoch_complete no longer deletes from the dict it iterates.
import pickle

from db import connect, sql
from snapgraph.snapshot.faults import fault_point  # snapgraph: a crash point for the tests (no-op otherwise)

offset = 0
messages_done = {}
c = None
conn = None

api.set_initial_snapshot_info(api.InitialProcessInfo(is_stateful=True))

def prestart():
    global c, conn
    conn = connect(api.config.connection)
    c = conn.cursor()

def is_batch_new(batch_num, message_num):
    c.execute(sql(conn, 'SELECT ID FROM WAL WHERE BATCH=? AND MESSAGE=?'), [batch_num, message_num])
    test_data = c.fetchall()
    return len(test_data) == 0

def on_input(msg_id, header, body):
    api.logger.debug('Receiving')
    data = body.get().body

    batch_num = header['batchNum'][0]
    message_num = header['messageNum'][0]

    if header['isFinal'][0]:
        api.logger.debug('Final message')
        global messages_done
        messages_done[message_num] = None

    # It will check if messageID and batchID do not exist in the WAL table, if they do, message is ignored
    if not is_batch_new(batch_num, message_num):
        return

    api.logger.debug('Inserting into test2')
    stmt = sql(conn, 'INSERT INTO test2 (x, y, z) VALUES (?, ?, ?)')
    for row in data:
        c.execute(stmt, row)

    fault_point("between_write_and_wal")

    api.logger.debug('Inserting into wal')
    # Insert into WAL table, and if message is done, insert accordingly
    c.execute(sql(conn, 'INSERT INTO WAL VALUES(?,?,?)'), [header['ID'][0], batch_num, message_num])
    conn.commit()  # snapgraph: rows + WAL record commit together

    api.logger.debug('sending to output')
    api.outputs.output.publish(str(data))


api.set_port_callback("input", on_input)

api.set_prestart(prestart)

# Any messages that have been finished by this point are eligible to be removed from
# WAL when the epoch is completed.
def serialize(epoch):
    global messages_done
    api.logger.debug(f'setting epochs {messages_done}')
    for messageID, val in messages_done.items():
        if val is None:
            messages_done[messageID] = epoch

    # The writer has to keep as state the map, since finished messages may not have had their epochs processed
    return pickle.dumps(messages_done)

api.set_serialize_callback(serialize)

def restore(epoch, state_bytes):
    global messages_done
    messages_done = pickle.loads(state_bytes)

api.set_restore_callback(restore)

# Any message whose corresponding epoch existing could
# be removed as we know the epoch has finished
def complete_callback(epoch):
    global messages_done
    api.logger.debug(f'removing from wal {messages_done}')
    for messageID, e in list(messages_done.items()):  # snapgraph: iterate over a copy while deleting
        if e == epoch:
            api.logger.debug(f'removing message {messageID}')
            c.execute(sql(conn, 'DELETE FROM WAL WHERE MESSAGE=?'), [messageID])
            conn.commit()

            # cleaning up ended epochs
            del messages_done[messageID]

api.set_epoch_complete_callback(complete_callback)
