using System.Net;
using System.Net.Sockets;
using IoMux.Web.Echo;
using IoMux.Web.Http;

namespace IoMux.Tests.Web;

/// <summary>A server whose loops cannot start (here: a backend this OS lacks) throws, and leaves nothing behind:
/// its listeners were bound first and must be closed again, or the port stays taken by a server that never ran.</summary>
public sealed class ServerStartFailureTests
{
    private static int FreePort()
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        probe.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)probe.LocalEndPoint!).Port;
    }

    private static string[] Descriptors() => Directory.GetFiles("/proc/self/fd").Select(f => { try { return $"{Path.GetFileName(f)}->{new FileInfo(f).LinkTarget}"; } catch (IOException) { return f; } }).ToArray();


    private static void AssertThePortIsFree(int port)
    {
        using var again = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        Assert.DoesNotThrow(() => again.Bind(new IPEndPoint(IPAddress.Loopback, port)), "the failed server still holds its port");
    }

    [Test]
    public void AnHttpServerThatCannotStartReleasesItsListeners()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("uses event ports as the backend this OS lacks, and /proc/self/fd");
        int port = FreePort();
        void Start() => HttpServer.Hello(new IPEndPoint(IPAddress.Loopback, port), new HttpServerOptions { ThreadCount = 2 }, backend: "ports");
        Assert.Throws<BackendUnavailableException>(Start); // the first attempt also loads assemblies (descriptors of their own)
        var before = Descriptors();
        Assert.Throws<BackendUnavailableException>(Start);
        AssertThePortIsFree(port);
        Assert.That(Descriptors().Except(before), Is.Empty, "descriptors left behind");
    }

    [Test]
    public void AnEchoServiceThatCannotStartReleasesItsListeners()
    {
        if (!OperatingSystem.IsLinux())
            Assert.Ignore("uses event ports as the backend this OS lacks, and /proc/self/fd");
        int port = FreePort();
        void Start() => _ = new EchoService(new IPEndPoint(IPAddress.Loopback, port), threadCount: 2, backend: "ports");
        Assert.Throws<BackendUnavailableException>(Start); // the first attempt also loads assemblies (descriptors of their own)
        var before = Descriptors();
        Assert.Throws<BackendUnavailableException>(Start);
        AssertThePortIsFree(port);
        Assert.That(Descriptors().Except(before), Is.Empty, "descriptors left behind");
    }
}
