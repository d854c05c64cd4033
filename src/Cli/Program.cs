using System.CommandLine;
using IoMux.Cli;

var backendOption = new Option<string?>("--backend", "-b")
{
    Description = "Check only this backend (epoll, poll, select, epoll-ms, poll-derived).",
};
var scenarioOption = new Option<string?>("--scenario", "-s")
{
    Description = "Check only this scenario id (e.g. H8).",
};

var backends = new Command("backends", "List every backend IoMux knows, whether it is available here, which one is chosen, and its capabilities.");
backends.SetAction(_ => Commands.Backends(Console.Out));

var check = new Command("check", "Run the conformance scenarios of docs/SEMANTICS.md on this machine; exits 1 if any fails.")
{
    backendOption,
    scenarioOption,
};
check.SetAction(result => Commands.Check(Console.Out, result.GetValue(backendOption), result.GetValue(scenarioOption)));

var proxy = IoMux.SocketProxy.ProxyCommand.Configure(new Command("proxy",
    "The socket-activation proxy (the same as iomux-socket-proxyd): relay the sockets passed by LISTEN_FDS to HOST:PORT or a Unix socket."));

var root = new RootCommand("iomux: the backends this machine offers and whether each keeps IoMux's contract. Without a command: backends, then check.")
{
    backends,
    check,
    proxy,
};
root.SetAction(_ =>
{
    int listed = Commands.Backends(Console.Out);
    Console.Out.WriteLine();
    return Math.Max(listed, Commands.Check(Console.Out, null, null));
});

return root.Parse(args).Invoke();
