using System.CommandLine;
using IoMux.SocketProxy;

var root = new RootCommand("Bidirectionally proxy local sockets to another (possibly remote) socket, on the IoMux event loop. " +
    "Drop-in for systemd-socket-proxyd: the listening sockets come by socket activation (LISTEN_FDS).");
return ProxyCommand.Configure(root).Parse(args).Invoke();
