using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using IoMux.AspNetCore;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace IoMux.Tests.AspNetCore;

/// <summary>The transports the application tests (HTTP/2, gRPC, YARP) run on: IoMux on epoll with either
/// scheduling, and Kestrel's socket transport as the reference. The protocols above the transport do not depend on
/// the backend (TransportTests covers every backend), so these tests keep to the native one to stay quick.</summary>
public static class ApplicationTargets
{
    public static IEnumerable<TransportTarget> All() =>
        TransportTarget.All().Where(t => t.Name is "epoll" or "epoll-inline" or "kestrel-sockets");
}

/// <summary>A WebApplication of a test's own making (services, endpoints, listeners) on the transport under test,
/// bound to loopback: the way a team would run gRPC or YARP after swapping in <c>UseIoMux()</c>.</summary>
public sealed class ApplicationHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private ApplicationHost(WebApplication app, Uri address)
    {
        _app = app;
        BaseAddress = address;
    }

    public Uri BaseAddress { get; }

    public IServiceProvider Services => _app.Services;

    /// <param name="listen">Kestrel's listeners (one, on loopback port 0).</param>
    /// <param name="services">The app's services (AddGrpc, AddReverseProxy…).</param>
    /// <param name="map">The app's endpoints.</param>
    public static async Task<ApplicationHost> StartAsync(TransportTarget target, Action<KestrelServerOptions> listen,
        Action<IServiceCollection>? services, Action<WebApplication> map)
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        builder.WebHost.ConfigureKestrel(o =>
        {
            o.Limits.MaxRequestBodySize = null;
            listen(o);
        });
        if (target.Backend is { } backend)
        {
            builder.WebHost.UseIoMux(o =>
            {
                o.ThreadCount = 2;
                o.PollerOverride = () => new Poller(backend.Create());
                o.Scheduling = target.Scheduling;
            });
        }
        services?.Invoke(builder.Services);
        var app = builder.Build();
        map(app);
        await app.StartAsync();
        var address = app.Services.GetRequiredService<Microsoft.AspNetCore.Hosting.Server.IServer>()
            .Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return new ApplicationHost(app, new Uri(address));
    }

    /// <summary>A listener on loopback port 0 speaking <paramref name="protocols"/>, over TLS with
    /// <paramref name="certificate"/> when given (ALPN then chooses between HTTP/1.1 and HTTP/2).</summary>
    public static Action<KestrelServerOptions> Loopback(HttpProtocols protocols, X509Certificate2? certificate = null) => o =>
        o.Listen(IPAddress.Loopback, 0, l =>
        {
            l.Protocols = protocols;
            if (certificate is not null)
                l.UseHttps(certificate);
        });

    /// <summary>A certificate for localhost/127.0.0.1 made here, so the TLS tests need no machine state; clients
    /// accept it by its hash.</summary>
    public static X509Certificate2 SelfSignedCertificate()
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=localhost", key, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddDnsName("localhost");
        names.AddIpAddress(IPAddress.Loopback);
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false)); // server auth
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddMinutes(-5), DateTimeOffset.UtcNow.AddDays(1));
        // Through PKCS#12 so the private key is usable by SslStream on every platform.
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }

    public async ValueTask DisposeAsync()
    {
        // Bounded: a stop that hangs (a stream the transport never completes) fails the test rather than the run.
        using var stop = new CancellationTokenSource(TimeSpan.FromSeconds(15));
        await _app.StopAsync(stop.Token);
        await _app.DisposeAsync();
    }
}
