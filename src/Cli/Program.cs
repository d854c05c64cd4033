using System.CommandLine;
using System.Net;
using IoMux.Cli;
using IoMux.Conformance;
using IoMux.SocketProxy;

var backendOption = new Option<string?>("--backend", "-b")
{
    Description = "Check only this backend (epoll, poll, select, epoll-ms, poll-derived).",
};
backendOption.Validators.Add(result =>
{
    var name = result.GetValueOrDefault<string?>();
    if (name is not null && !ConformanceRunner.Targets.Any(t => string.Equals(t.Name, name, StringComparison.OrdinalIgnoreCase)))
        result.AddError($"--backend {name}: unknown backend; known: {string.Join(", ", ConformanceRunner.Targets.Select(t => t.Name))}");
});
var scenarioOption = new Option<string?>("--scenario", "-s")
{
    Description = "Check only this scenario id (e.g. H8).",
};
scenarioOption.Validators.Add(result =>
{
    var id = result.GetValueOrDefault<string?>();
    if (id is not null && !ScenarioCatalog.All.Any(s => string.Equals(s.Id, id, StringComparison.OrdinalIgnoreCase)))
        result.AddError($"--scenario {id}: unknown scenario (the ids are in docs/SEMANTICS.md)");
});

var backends = new Command("backends", "List every backend IoMux knows, whether it is available here, which one is chosen, and its capabilities.");
backends.SetAction(_ => Commands.Backends(Console.Out));

var abiOption = new Option<bool>("--abi")
{
    Description = "Instead of the scenarios: print every per-OS constant and struct layout IoMux uses here beside what the C compiler says from this OS's headers; exits 1 if any differs, 3 without a working C compiler.",
};
var check = new Command("check", "Run the conformance scenarios of docs/SEMANTICS.md on this machine; exits 1 if any fails.")
{
    backendOption,
    scenarioOption,
    abiOption,
};
check.SetAction(result => result.GetValue(abiOption)
    ? AbiCheck.Run(Console.Out)
    : Commands.Check(Console.Out, result.GetValue(backendOption), result.GetValue(scenarioOption)));

var proxy = ProxyCommand.Configure(new Command("proxy",
    "The socket-activation proxy (the same as iomux-socket-proxyd): relay the sockets passed by LISTEN_FDS to HOST:PORT or a Unix socket."));

var portOption = UnixCommand.BoundedInt("--port", "-p", "a port", 1, 65535, 8080);
portOption.Description = "TCP port.";
var addressOption = new Option<IPAddress>("--address", "-a")
{
    Description = "Address to listen on.",
    DefaultValueFactory = _ => IPAddress.Loopback,
}.ParsedWith(text => IPAddress.TryParse(text, out var address) ? address : throw new FormatException($"'{text}' is not an IP address"));
var threadsOption = UnixCommand.BoundedInt("--threads", "-t", "a thread count", 1, int.MaxValue, Environment.ProcessorCount);
threadsOption.Description = "Loop threads, one SO_REUSEPORT listener each (default: one per core).";
var directoryArgument = new Argument<string>("DIR") { Description = "The directory to serve." };
directoryArgument.Validators.Add(ServedDirectory.Validate);
var accessLogOption = new Option<bool>("--access-log") { Description = "Log one line per response on stderr (method, target, status, bytes, duration)." };

var serve = new Command("serve", "Serve the files under DIR over HTTP/1.1 (GET, HEAD; keep-alive; sendfile) until SIGINT or SIGTERM.")
{
    directoryArgument, portOption, addressOption, threadsOption, accessLogOption,
};
var hello = new Command("hello", "Answer every HTTP GET with \"Hello, World!\" until SIGINT or SIGTERM (the benchmark responder).")
{
    portOption, addressOption, threadsOption, accessLogOption,
};
var echo = new Command("echo", "A TCP echo server until SIGINT or SIGTERM.")
{
    portOption, addressOption, threadsOption,
};
foreach (var server in new[] { serve, hello, echo })
{
    var kind = server.Name;
    server.SetAction(result => Servers.Run(kind, new IPEndPoint(result.GetValue(addressOption)!, UnixCommand.GetInt(result, portOption)),
        UnixCommand.GetInt(result, threadsOption), kind == "serve" ? result.GetValue(directoryArgument) : null, kind != "echo" && result.GetValue(accessLogOption)));
}

var root = UnixCommand.Root("iomux", "iomux: the backends this machine offers and whether each keeps IoMux's contract. Without a command: backends, then check.");
root.Add(backends);
root.Add(check);
root.Add(proxy);
root.Add(serve);
root.Add(hello);
root.Add(echo);
root.SetAction(_ =>
{
    int listed = Commands.Backends(Console.Out);
    Console.Out.WriteLine();
    return Math.Max(listed, Commands.Check(Console.Out, null, null));
});

// `iomux proxy` reads its arguments as iomux-socket-proxyd does (getopt_long's abbreviations, the last value of an
// option winning); its exit codes stay iomux's.
if (args.Length > 0 && args[0] == "proxy")
    args = ["proxy", .. Getopt.Canonical(args[1..])];
return UnixCommand.Run(root, args);
