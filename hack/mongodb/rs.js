// The members' healthcheck (compose.yaml), run by mongosh against one member.
// On the member with RS_INITIATE set it initiates the replica set once, naming
// every member by the address it listens on; it is a no-op once the set
// exists. It exits non-zero until this member is PRIMARY or SECONDARY.
const host = process.env.RS_HOST || '127.0.0.1';
if (process.env.RS_INITIATE) {
  try {
    rs.status();
  } catch (e) {
    if (e.codeName !== 'NotYetInitialized') throw e;
    rs.initiate({
      _id: 'velvetrope',
      members: [27017, 27018, 27019].map((port, i) => ({ _id: i, host: host + ':' + port })),
    });
  }
}
const hello = db.hello();
if (!(hello.isWritablePrimary || hello.secondary)) {
  print('not yet PRIMARY or SECONDARY: ' + JSON.stringify(hello.hosts || 'no replica set'));
  quit(1);
}
