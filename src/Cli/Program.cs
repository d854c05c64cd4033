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

var portOption = new Option<int>("--port", "-p") { Description = "TCP port (default 8080).", DefaultValueFactory = _ => 8080 };
var addressOption = new Option<string>("--address", "-a") { Description = "Address to listen on (default 127.0.0.1).", DefaultValueFactory = _ => "127.0.0.1" };
var threadsOption = new Option<int>("--threads", "-t") { Description = "Loop threads, one SO_REUSEPORT listener each (default: one per core).", DefaultValueFactory = _ => Environment.ProcessorCount };
var directoryArgument = new Argument<string>("DIR") { Description = "The directory to serve." };
var accessLogOption = new Option<bool>("--access-log") { Description = "Log one line per response on stderr (method, target, status, bytes, duration)." };

var serve = new Command("serve", "Serve the files under DIR over HTTP/1.1 (GET, HEAD; keep-alive; sendfile) until SIGINT or SIGTERM.")
{
    directoryArgument, portOption, addressOption, threadsOption, accessLogOption,
};
serve.SetAction(result => Servers.Run("serve", result.GetValue(addressOption)!, result.GetValue(portOption), result.GetValue(threadsOption), result.GetValue(directoryArgument),
    result.GetValue(accessLogOption)));
var hello = new Command("hello", "Answer every HTTP GET with \"Hello, World!\" until SIGINT or SIGTERM (the benchmark responder).")
{
    portOption, addressOption, threadsOption, accessLogOption,
};
hello.SetAction(result => Servers.Run("hello", result.GetValue(addressOption)!, result.GetValue(portOption), result.GetValue(threadsOption), null,
    result.GetValue(accessLogOption)));
var echo = new Command("echo", "A TCP echo server until SIGINT or SIGTERM.")
{
    portOption, addressOption, threadsOption,
};
echo.SetAction(result => Servers.Run("echo", result.GetValue(addressOption)!, result.GetValue(portOption), result.GetValue(threadsOption), null));

var root = new RootCommand("iomux: the backends this machine offers and whether each keeps IoMux's contract. Without a command: backends, then check.")
{
    backends,
    check,
    proxy,
    serve,
    hello,
    echo,
};
root.SetAction(_ =>
{
    int listed = Commands.Backends(Console.Out);
    Console.Out.WriteLine();
    return Math.Max(listed, Commands.Check(Console.Out, null, null));
});

return root.Parse(args).Invoke();
